"""Build the InferenceClient the configuration asks for: in-process, worker process (default) or Ray Serve."""

from __future__ import annotations

import logging

from inference.client import InferenceClient
from inference.config import InferenceConfig

log = logging.getLogger(__name__)


def create_inference_client(config: InferenceConfig) -> InferenceClient:
    """A not-yet-started client; ``await client.start()`` returns at once and models load behind it."""
    if config.backend == "inprocess":
        from inference.backends.inprocess import InProcessClient

        return InProcessClient(config)
    if config.backend == "worker":
        from inference.backends.worker import WorkerClient

        return WorkerClient(config)
    if config.backend == "ray":
        from inference.backends.ray_serve import RayServeClient

        return RayServeClient(config)
    raise ValueError(f"unknown inference backend {config.backend!r}")
