"""One typed settings object, read from the environment and `.env`, validated once at start-up."""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path
from typing import Literal

from dotenv import load_dotenv
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///peercare.db"


class InferenceBackend(str, Enum):
    INPROCESS = "inprocess"
    WORKER = "worker"
    RAY = "ray"


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it in one line."""


class Settings(BaseSettings):
    """Every setting PeerCare reads. Each one is documented in `.env.example`."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    discord_token: SecretStr | None = Field(default=None, description="Bot token from the Developer Portal")
    dev_guild_id: int | None = Field(
        default=None, description="Sync slash commands to this guild only (fast)"
    )
    database_url: str = DEFAULT_DATABASE_URL
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    inference_backend: InferenceBackend = InferenceBackend.WORKER
    inference_device: Literal["auto", "cpu", "cuda"] = "auto"
    empathy_er_model: str = "shipped:empathy-ER"
    empathy_ip_model: str = "shipped:empathy-IP"
    empathy_ex_model: str = "shipped:empathy-EX"
    risk_model: str = "shipped:risk"
    risk_problem_type: Literal["auto", "multi_label_classification", "single_label_classification"] = "auto"
    inference_max_batch: int = Field(default=32, ge=1, le=1024)
    inference_max_wait_ms: float = Field(default=5.0, ge=0, le=1000)
    inference_queue_size: int = Field(default=256, ge=1)
    inference_timeout_s: float = Field(default=60.0, gt=0)
    inference_quantize_int8: bool = False
    inference_cpu_dtype: Literal["auto", "fp32", "bf16"] = "auto"
    inference_cpu_threads: int | None = Field(default=None, ge=1, le=256)
    ray_address: str | None = None

    message_retention_days: int = Field(default=7, ge=0, le=365)
    guild_data_grace_days: int = Field(default=14, ge=0, le=365)

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if value.startswith("sqlite:///"):
            return value.replace("sqlite:///", "sqlite+aiosqlite:///", 1)
        if value.startswith(("postgresql://", "postgres://")):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must be sqlite:///FILE or postgresql://USER:PASS@HOST/DB")
        return value

    @field_validator("dev_guild_id", "ray_address", "discord_token", "inference_cpu_threads", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    def require_token(self) -> str:
        if self.discord_token is None or not self.discord_token.get_secret_value().strip():
            raise SettingsError(
                "DISCORD_TOKEN is not set: put your bot token in .env (see .env.example and README)"
            )
        return self.discord_token.get_secret_value().strip()


def load_settings(env_file: str | Path | None = ".env", **overrides: object) -> Settings:
    """Read `.env` (if present) into the environment, then validate every setting.

    Raises SettingsError with one line naming the offending setting, never a traceback.
    """
    if env_file is not None and Path(env_file).is_file():
        load_dotenv(env_file, override=False)
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise SettingsError(f"{name} is invalid: {first['msg']}") from None
