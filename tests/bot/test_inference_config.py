"""Every inference setting reaches the inference layer's own config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.inference_config import inference_config_from_settings
from bot.settings import SettingsError, load_settings
from inference.backends.ray_serve import model_sources
from inference.backends.ray_serve_app import config_from_args
from inference.types import Mechanism

SERVE_CONFIG = Path(__file__).parents[2] / "deploy" / "ray-serve.yaml"


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


def test_a_shared_serve_app_reaches_the_inference_config() -> None:
    settings = load_settings(env_file=None, inference_backend="ray", ray_serve_app=" peercare-inference ")
    assert inference_config_from_settings(settings).ray_serve_app == "peercare-inference"


def test_a_blank_serve_app_means_the_process_deploys_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCE_BACKEND", "ray")
    monkeypatch.setenv("RAY_SERVE_APP", "  ")
    assert inference_config_from_settings(load_settings(env_file=None)).ray_serve_app is None


def test_a_serve_app_without_the_ray_backend_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCE_BACKEND", "worker")
    monkeypatch.setenv("RAY_SERVE_APP", "peercare-inference")
    with pytest.raises(SettingsError, match=r"^RAY_SERVE_APP is invalid: .*INFERENCE_BACKEND=ray") as error:
        load_settings(env_file=None)
    assert "\n" not in str(error.value)


def test_the_shipped_serve_config_serves_the_models_a_default_bot_expects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for mechanism in Mechanism:
        monkeypatch.delenv(f"EMPATHY_{mechanism.value}_MODEL", raising=False)
    monkeypatch.delenv("RISK_MODEL", raising=False)
    monkeypatch.delenv("RISK_PROBLEM_TYPE", raising=False)
    (application,) = yaml.safe_load(SERVE_CONFIG.read_text())["applications"]
    bot = inference_config_from_settings(load_settings(env_file=None, inference_backend="ray"))
    assert model_sources(config_from_args(application["args"])) == model_sources(bot)
