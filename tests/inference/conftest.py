"""Fixtures for the inference tests: tiny real models saved once per session, and configs that use them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from inference.config import InferenceConfig
from inference.types import Mechanism


@dataclasses.dataclass(frozen=True)
class TinyModels:
    empathy: dict[Mechanism, str]
    risk: str


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """Tiny random ER/IP/EX models and a tiny multi-label risk model, saved in PeerCare's own format."""
    from tests.support.tiny_empathy import build_tiny_empathy_models
    from tests.support.tiny_risk import build_tiny_risk_model

    folder: Path = tmp_path_factory.mktemp("tiny-models")
    empathy = build_tiny_empathy_models(folder / "empathy")
    risk = build_tiny_risk_model(folder / "risk")
    return TinyModels({Mechanism(m): str(p) for m, p in empathy.items()}, str(risk))


@pytest.fixture(scope="session")
def tiny_config(tiny_models: TinyModels) -> Callable[..., InferenceConfig]:
    """``tiny_config(backend, **overrides)``: a CPU config over the tiny models with short test timeouts."""

    def make(backend: str = "inprocess", **overrides: object) -> InferenceConfig:
        options: dict[str, object] = {
            "backend": backend,
            "device": "cpu",
            "empathy_sources": dict(tiny_models.empathy),
            "risk_source": tiny_models.risk,
            "max_batch_size": 8,
            "max_wait_ms": 2.0,
            "cpu_threads": 1,
            "heartbeat_interval_s": 0.2,
            "heartbeat_timeout_s": 20.0,
            "request_timeout_s": 30.0,
            # Several Ray Serve apps may be up at once in the contract tests; keep each replica small.
            "ray_replica_cpus": 0.25,
        }
        options.update(overrides)
        return InferenceConfig(**options)  # type: ignore[arg-type]

    return make
