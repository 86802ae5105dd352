"""A Ray Serve application builder: the Ray backend's deployment, configured from a Serve config file.

``deploy/ray-serve.yaml`` points ``import_path`` here; ``serve deploy deploy/ray-serve.yaml`` then runs the same
``scorer`` deployment ``inference.backends.ray_serve.build_app`` builds (each replica loads one ScoringEngine;
``@serve.batch`` micro-batches), with replicas, autoscaling and GPUs set in that file. ``args`` are
``InferenceConfig`` fields (``device``, ``max_batch_size``, ``max_wait_ms``, ``queue_size``, ``cpu_dtype``,
``cpu_threads``, ``ray_replica_cpus``...) plus ``empathy_er_model`` / ``empathy_ip_model`` / ``empathy_ex_model``
and ``risk_model`` with the same values as the bot's settings of those names.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from inference.config import InferenceConfig
from inference.types import Mechanism

_EMPATHY_ARGS = {f"empathy_{m.value.lower()}_model": m for m in Mechanism}
_RENAMED = {"risk_model": "risk_source"}
# Fields that make no sense on a replica: it is the deployment, not a client of one.
_CLIENT_ONLY = {
    "backend",
    "ray_address",
    "ray_serve_app",
    "request_timeout_s",
    "heartbeat_interval_s",
    "heartbeat_timeout_s",
}


def config_from_args(args: dict[str, Any]) -> InferenceConfig:
    """The replicas' InferenceConfig from the config file's ``args``; an unknown name is refused by name."""
    fields = {f.name for f in dataclasses.fields(InferenceConfig)} - _CLIENT_ONLY
    options: dict[str, Any] = {"backend": "ray"}
    empathy = {m: f"shipped:empathy-{m.value}" for m in Mechanism}
    unknown = []
    for name, value in (args or {}).items():
        if name in _EMPATHY_ARGS:
            empathy[_EMPATHY_ARGS[name]] = str(value)
        elif _RENAMED.get(name, name) in fields:
            options[_RENAMED.get(name, name)] = value
        else:
            unknown.append(name)
    if unknown:
        raise ValueError(f"deploy/ray-serve.yaml: unknown args {', '.join(sorted(unknown))}")
    return InferenceConfig(empathy_sources=empathy, **options)


def app(args: dict[str, Any]) -> Any:
    """The Serve application builder ``import_path: inference.backends.ray_serve_app:app`` names."""
    from inference.backends.ray_serve import build_app

    return build_app(config_from_args(args))
