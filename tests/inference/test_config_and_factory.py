"""InferenceConfig validation and the factory's choice of backend."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest

from inference.backends.inprocess import InProcessClient
from inference.backends.worker import WorkerClient
from inference.client import InferenceClient
from inference.config import InferenceConfig
from inference.errors import InferenceUnavailable
from inference.factory import create_inference_client
from inference.types import Mechanism


def test_the_default_backend_is_the_worker_process_on_the_shipped_models():
    config = InferenceConfig()
    assert config.backend == "worker"
    assert config.empathy_sources[Mechanism.EXPLORATIONS] == "shipped:empathy-EX"
    assert config.risk_source == "shipped:risk"


def test_an_unknown_backend_is_refused_naming_the_setting():
    with pytest.raises(ValueError, match="INFERENCE_BACKEND"):
        InferenceConfig(backend="gpu-cluster")  # type: ignore[arg-type]


def test_a_missing_mechanism_is_refused():
    with pytest.raises(ValueError, match="IP"):
        InferenceConfig(empathy_sources={Mechanism.EMOTIONAL_REACTIONS: "a", Mechanism.EXPLORATIONS: "b"})


def test_path_sources_become_plain_strings_so_the_config_pickles(tmp_path: Path):
    sources = {m: tmp_path / m.value for m in Mechanism}
    config = InferenceConfig(empathy_sources=sources, risk_source=tmp_path / "risk")  # type: ignore[arg-type]
    assert all(isinstance(src, str) for src in config.empathy_sources.values())
    assert pickle.loads(pickle.dumps(config)) == config


@pytest.mark.parametrize(("backend", "kind"), [("inprocess", InProcessClient), ("worker", WorkerClient)])
def test_the_factory_builds_the_configured_backend(backend, kind):
    client = create_inference_client(InferenceConfig(backend=backend))
    assert isinstance(client, kind)
    assert isinstance(client, InferenceClient)
    assert not client.ready


def test_the_ray_backend_without_ray_installed_says_how_to_get_it(monkeypatch):
    import inference.backends.ray_serve as ray_serve

    monkeypatch.setattr(ray_serve, "ray_available", lambda: False)
    with pytest.raises(InferenceUnavailable, match=r"peercare\[ray\]"):
        create_inference_client(dataclasses.replace(InferenceConfig(), backend="ray"))


async def test_calls_before_start_fail_with_a_typed_error():
    from inference.types import RiskScoreRequest

    for backend in ("inprocess", "worker"):
        with pytest.raises(InferenceUnavailable, match="start"):
            await create_inference_client(InferenceConfig(backend=backend)).score_risk(
                RiskScoreRequest(1, "hi")
            )
