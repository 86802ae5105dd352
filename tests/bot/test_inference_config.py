"""Every inference setting reaches the inference layer's own config."""

from __future__ import annotations

import pytest

from bot.inference_config import inference_config_from_settings
from bot.settings import load_settings
from inference.types import Mechanism


def test_inference_settings_reach_the_inference_config() -> None:
    settings = load_settings(
        env_file=None,
        inference_backend="inprocess",
        inference_device="cpu",
        empathy_ip_model="/models/ip",
        risk_model="/models/risk",
        risk_problem_type="single_label_classification",
        inference_max_batch=8,
        inference_cpu_dtype="bf16",
        inference_cpu_threads=3,
    )
    config = inference_config_from_settings(settings)
    assert config.backend == "inprocess"
    assert config.device == "cpu"
    assert config.empathy_sources[Mechanism.INTERPRETATIONS] == "/models/ip"
    assert config.empathy_sources[Mechanism.EMOTIONAL_REACTIONS] == "shipped:empathy-ER"
    assert config.risk_source == "/models/risk"
    assert config.risk_problem_type == "single_label_classification"
    assert config.max_batch_size == 8
    assert config.cpu_dtype == "bf16"
    assert config.cpu_threads == 3


def test_auto_problem_type_defers_to_the_model_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFERENCE_BACKEND", raising=False)
    monkeypatch.delenv("RISK_PROBLEM_TYPE", raising=False)
    config = inference_config_from_settings(load_settings(env_file=None))
    assert config.risk_problem_type is None
    assert config.backend == "worker"
