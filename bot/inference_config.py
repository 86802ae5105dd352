"""Translate the bot's settings into the inference layer's own config (inference/ never reads bot settings)."""

from __future__ import annotations

from bot.settings import Settings
from inference.config import InferenceConfig, shipped_empathy_sources
from inference.types import Mechanism

# The chat recogniser that keeps a chat-style reflection or question from being scored 'none' (issue 14).
# Its cut-offs were chosen together with the shipped ER/IP/EX models' levels, so it is on exactly when those
# are the empathy models. TODO(issue 14): an EMPATHY_CHAT_RECOGNISER setting once bot/settings.py's pending
# changes have landed.
CHAT_RECOGNISER = "shipped:empathy-chat"


def inference_config_from_settings(settings: Settings) -> InferenceConfig:
    empathy = {
        Mechanism.EMOTIONAL_REACTIONS: settings.empathy_er_model,
        Mechanism.INTERPRETATIONS: settings.empathy_ip_model,
        Mechanism.EXPLORATIONS: settings.empathy_ex_model,
    }
    return InferenceConfig(
        backend=settings.inference_backend.value,
        device=settings.inference_device,
        empathy_sources=empathy,
        empathy_recogniser=CHAT_RECOGNISER if empathy == shipped_empathy_sources() else None,
        risk_source=settings.risk_model,
        risk_problem_type=None if settings.risk_problem_type == "auto" else settings.risk_problem_type,
        max_batch_size=settings.inference_max_batch,
        max_wait_ms=settings.inference_max_wait_ms,
        queue_size=settings.inference_queue_size,
        request_timeout_s=settings.inference_timeout_s,
        quantize_int8=settings.inference_quantize_int8,
        cpu_dtype=settings.inference_cpu_dtype,
        cpu_threads=settings.inference_cpu_threads,
        ray_address=settings.ray_address,
        ray_serve_app=settings.ray_serve_app,
    )
