"""Settings: defaults that work offline, one clear line per bad setting."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.settings import DEFAULT_DATABASE_URL, InferenceBackend, SettingsError, load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No PeerCare setting from outside, and none left behind (load_dotenv writes to os.environ directly)."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(("DISCORD_", "DATABASE_", "INFERENCE_", "DEV_GUILD", "EMPATHY_", "RISK_")):
            monkeypatch.delenv(name)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_defaults_need_no_configuration() -> None:
    settings = load_settings(env_file=None)
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.inference_backend is InferenceBackend.WORKER
    assert settings.empathy_er_model == "shipped:empathy-ER"
    assert settings.risk_model == "shipped:risk"
    assert settings.inference_cpu_dtype == "auto"


def test_env_file_is_read(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("INFERENCE_BACKEND=inprocess\nDEV_GUILD_ID=42\n")
    settings = load_settings(env_file=env)
    assert settings.inference_backend is InferenceBackend.INPROCESS
    assert settings.dev_guild_id == 42


def test_plain_database_urls_get_async_drivers() -> None:
    assert (
        load_settings(env_file=None, database_url="sqlite:///x.db").database_url == "sqlite+aiosqlite:///x.db"
    )
    pg = load_settings(env_file=None, database_url="postgresql://u:p@h/db").database_url
    assert pg == "postgresql+asyncpg://u:p@h/db"


def test_malformed_setting_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCE_MAX_BATCH", "lots")
    with pytest.raises(SettingsError, match=r"^INFERENCE_MAX_BATCH is invalid"):
        load_settings(env_file=None)


def test_unknown_backend_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCE_BACKEND", "cloud")
    with pytest.raises(SettingsError, match=r"^INFERENCE_BACKEND is invalid"):
        load_settings(env_file=None)


def test_missing_token_is_reported_only_when_needed() -> None:
    settings = load_settings(env_file=None)
    with pytest.raises(SettingsError, match=r"^DISCORD_TOKEN is not set"):
        settings.require_token()


def test_blank_token_counts_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "   ")
    with pytest.raises(SettingsError, match="DISCORD_TOKEN"):
        load_settings(env_file=None).require_token()


def test_token_is_not_shown_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "secret-token-value")
    settings = load_settings(env_file=None)
    assert "secret-token-value" not in repr(settings)
    assert settings.require_token() == "secret-token-value"
