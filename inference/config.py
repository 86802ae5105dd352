"""The inference layer's own configuration: which backend runs which models, and how requests are batched."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Literal

from inference.types import Mechanism

log = logging.getLogger(__name__)

Backend = Literal["inprocess", "worker", "ray"]
Device = Literal["auto", "cpu", "cuda"]
CpuDtype = Literal["auto", "fp32", "bf16"]
BACKENDS: tuple[Backend, ...] = ("inprocess", "worker", "ray")
DEVICES: tuple[Device, ...] = ("auto", "cpu", "cuda")


def shipped_empathy_sources() -> dict[Mechanism, str]:
    return {mechanism: f"shipped:empathy-{mechanism.value}" for mechanism in Mechanism}


@dataclass
class InferenceConfig:
    """Everything a backend needs to load the models and serve requests.

    Plain data only (strings, numbers): the worker backend sends it to a fresh process and the
    Ray backend to remote replicas.
    """

    backend: Backend = "worker"
    device: Device = "auto"
    empathy_sources: dict[Mechanism, str] = field(default_factory=shipped_empathy_sources)
    risk_source: str = "shipped:risk"
    # The chat recogniser that raises ER/IP/EX to at least weak where it fires (e.g. "shipped:empathy-chat");
    # None = the bi-encoders alone. The bot turns it on (bot/inference_config.py).
    empathy_recogniser: str | None = None
    # None = take multi-label vs single-label from the risk model's own config.
    risk_problem_type: str | None = None
    # Dynamic batching: the largest batch, and how long the first request of a batch may wait for company.
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    # Requests queued before coaching work has to wait (and, after coaching_wait_s, is shed). Risk work
    # is admitted even past this bound: it is never shed.
    queue_size: int = 256
    coaching_wait_s: float = 2.0
    # A request to the worker unanswered this long means the worker hung: it is restarted, the request resent.
    request_timeout_s: float = 60.0
    # Parents whose seeker encoding (and risk) stay cached; many replies share one parent.
    seeker_cache_size: int = 2048
    # None = as many torch threads as CPU cores this process may use.
    cpu_threads: int | None = None
    # CPU precision: "fp32" (the checkpoints' own), "bf16" — faster on CPUs with AMX or AVX512-BF16 and, on the
    # shipped models, the same tiers and 99.5% of levels (bench/RESULTS.md) — or "auto": bf16 exactly where
    # the CPU has it natively, else fp32 (the bot's default). Ignored on GPU, which always runs bf16/fp16.
    cpu_dtype: CpuDtype = "fp32"
    quantize_int8: bool = False
    # Dynamic int8 is kept only if it agrees with fp32 on at least this share of built-in probe outcomes.
    int8_min_agreement: float = 0.95
    ray_address: str | None = None
    # A Serve application already running on the cluster (deploy/ray-serve.yaml's name) that the Ray client
    # attaches to, never deploying or deleting it; None = the client runs its own copy for its lifetime.
    ray_serve_app: str | None = None
    # CPUs Ray reserves for each Serve replica (the replica's torch threads follow cpu_threads).
    ray_replica_cpus: float = 1.0
    # Worker process supervision.
    heartbeat_interval_s: float = 1.0
    heartbeat_timeout_s: float = 15.0
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"INFERENCE_BACKEND must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.device not in DEVICES:
            raise ValueError(f"INFERENCE_DEVICE must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if self.cpu_dtype not in ("auto", "fp32", "bf16"):
            raise ValueError(f"the CPU precision must be auto, fp32 or bf16, not {self.cpu_dtype!r}")
        missing = [m.value for m in Mechanism if m not in self.empathy_sources]
        if missing:
            raise ValueError(f"no empathy model configured for {', '.join(missing)}")
        # Sources may arrive as paths; keep them as strings so the config pickles and logs cleanly.
        self.empathy_sources = {Mechanism(m): os.fspath(src) for m, src in self.empathy_sources.items()}
        self.risk_source = os.fspath(self.risk_source)
        if self.empathy_recogniser is not None:
            self.empathy_recogniser = os.fspath(self.empathy_recogniser)
        if self.max_batch_size < 1:
            raise ValueError("INFERENCE_MAX_BATCH must be at least 1")
        if self.queue_size < 1:
            raise ValueError("INFERENCE_QUEUE_SIZE must be at least 1")
        if self.max_wait_ms < 0 or self.coaching_wait_s < 0:
            raise ValueError("INFERENCE_MAX_WAIT_MS and the coaching wait must not be negative")
        if self.request_timeout_s <= 0 or self.heartbeat_timeout_s <= 0:
            raise ValueError("INFERENCE_TIMEOUT_S must be positive")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
