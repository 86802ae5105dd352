"""One typed settings object, read from the environment and `.env`, validated once at start-up."""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path
from typing import Annotated, Literal

from dotenv import load_dotenv
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.sharding import AUTO, ShardPlan, parse_shard_ids

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
    # Discord shards (bot.sharding): both empty = one connection; SHARD_COUNT=N (or auto) = this process runs all
    # N shards; SHARD_IDS=0-1 or 0,2 = only those, other processes run the rest on the same PostgreSQL database.
    shard_count: int | Literal["auto"] | None = None
    shard_ids: Annotated[tuple[int, ...] | None, NoDecode] = None

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
    # A Serve application deployed from deploy/ray-serve.yaml that every bot process of a fleet shares; empty =
    # this process deploys its own copy on the cluster for its lifetime (one bot process).
    ray_serve_app: str | None = None

    message_retention_days: int = Field(default=7, ge=0, le=365)
    guild_data_grace_days: int = Field(default=14, ge=0, le=365)
    # A member's messages in one channel or thread, each within this many minutes of the last, are risk-judged
    # together as one burst ("i can't do this anymore" / "like really" / ...). 0 judges each message alone.
    risk_burst_minutes: int = Field(default=5, ge=0, le=60)
    # A member has one case at a time: new high-risk messages join it. Once it has been quiet this long (no new
    # message), or a moderator resolved it, a new high-risk message opens a new case that pages again.
    case_quiet_minutes: int = Field(default=240, ge=0, le=10080)

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

    @field_validator(
        "dev_guild_id",
        "ray_address",
        "ray_serve_app",
        "discord_token",
        "inference_cpu_threads",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("ray_serve_app")
    @classmethod
    def _serve_app_needs_ray(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("inference_backend") is not InferenceBackend.RAY:
            raise PydanticCustomError(
                "ray_serve_app", "is a Ray Serve application: set INFERENCE_BACKEND=ray too"
            )
        return value.strip() if value is not None else None

    @field_validator("shard_count", mode="before")
    @classmethod
    def _shard_count(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().lower()
            if not value:
                return None
            if value != AUTO and not value.isdigit():
                raise PydanticCustomError("shard_count", "must be a number of shards (1 or more) or auto")
        if value != AUTO and value is not None and int(value) < 1:  # type: ignore[call-overload]
            raise PydanticCustomError("shard_count", "must be a number of shards (1 or more) or auto")
        return value

    @field_validator("shard_ids", mode="before")
    @classmethod
    def _shard_ids(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                return parse_shard_ids(value)
            except ValueError as exc:
                raise PydanticCustomError("shard_ids", str(exc)) from None
        return value

    @field_validator("shard_ids")
    @classmethod
    def _shard_ids_fit(cls, value: tuple[int, ...] | None, info: ValidationInfo) -> tuple[int, ...] | None:
        if value is None:
            return None
        count = info.data.get("shard_count")
        if not isinstance(count, int):
            raise PydanticCustomError("shard_ids", "needs SHARD_COUNT set to the fleet's number of shards")
        if value and max(value) >= count:
            raise PydanticCustomError(
                "shard_ids",
                "shard {shard} is not below SHARD_COUNT={count}",
                {"shard": max(value), "count": count},
            )
        database_url = str(info.data.get("database_url", ""))
        if ShardPlan.from_settings(count, value).is_subset and database_url.startswith("sqlite"):
            raise PydanticCustomError(
                "shard_ids",
                "runs only some shards, so other processes share the database, and SQLite is one process only: "
                "set DATABASE_URL=postgresql://... or leave SHARD_IDS empty",
            )
        return value

    @property
    def shard_plan(self) -> ShardPlan:
        return ShardPlan.from_settings(self.shard_count, self.shard_ids)

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
