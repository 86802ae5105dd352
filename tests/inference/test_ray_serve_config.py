"""deploy/ray-serve.yaml stays deployable: its args build the Ray backend's InferenceConfig, its names match."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from inference.backends.ray_serve_app import config_from_args
from inference.types import Mechanism

CONFIG = Path(__file__).parents[2] / "deploy" / "ray-serve.yaml"


def _application() -> dict:
    (application,) = yaml.safe_load(CONFIG.read_text())["applications"]
    return application


def test_the_serve_config_names_the_builder_and_the_backends_deployment() -> None:
    application = _application()
    assert application["import_path"] == "inference.backends.ray_serve_app:app"
    (deployment,) = application["deployments"]
    assert deployment["name"] == "scorer"  # the name build_app gives it
    autoscaling = deployment["autoscaling_config"]
    assert 1 <= autoscaling["min_replicas"] <= autoscaling["initial_replicas"] <= autoscaling["max_replicas"]
    assert deployment["max_ongoing_requests"] == application["args"]["queue_size"]


def test_the_serve_config_args_build_an_inference_config() -> None:
    config = config_from_args(_application()["args"])
    assert config.backend == "ray" and config.device == "cuda"
    assert config.empathy_sources[Mechanism.EMOTIONAL_REACTIONS] == "shipped:empathy-ER"
    assert config.risk_source == "shipped:risk"
    assert (config.max_batch_size, config.max_wait_ms, config.ray_replica_cpus) == (64, 10, 4)


def test_an_unknown_arg_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown args max_batch"):
        config_from_args({"max_batch": 8})
    with pytest.raises(ValueError, match="ray_address"):
        config_from_args({"ray_address": "ray://elsewhere:10001"})  # a client setting, not a replica's
