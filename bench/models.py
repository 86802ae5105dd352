"""The models the benchmark runs: the shipped ones, or freshly initialised MiniLM-shaped ones (same compute)."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

from inference.errors import ModelLoadError
from inference.sources import minilm_path, resolve_source
from inference.types import Mechanism

log = logging.getLogger(__name__)

RISK_LABELS = ("suicidal", "depression", "stress")


@dataclass(frozen=True)
class BenchModels:
    empathy: dict[Mechanism, str]
    risk: str
    description: str


def shipped_models() -> BenchModels | None:
    empathy = {m: f"shipped:empathy-{m.value}" for m in Mechanism}
    try:
        for source in [*empathy.values(), "shipped:risk"]:
            resolve_source(source)
    except ModelLoadError:
        return None
    return BenchModels(empathy, "shipped:risk", "shipped (all-MiniLM-L6-v2 based ER/IP/EX + risk)")


def fresh_models(folder: Path) -> BenchModels:
    """ER/IP/EX bi-encoders and a risk classifier over the offline all-MiniLM-L6-v2, heads untrained.

    Same shapes and so the same compute as the shipped models; their scores are meaningless.
    """
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    from inference.empathy.checkpoints import save_pretrained
    from inference.empathy.model import BiEncoderConfig, EmpathyBiEncoder

    base = minilm_path()
    torch.manual_seed(0)
    seeker = AutoModel.from_pretrained(base, add_pooling_layer=False)
    empathy = {}
    for mechanism in Mechanism:
        responder = copy.deepcopy(seeker)  # trainable: saved in full, as a fine-tuned responder would be
        model = EmpathyBiEncoder(
            BiEncoderConfig(mechanism.value, seeker.config.hidden_size), seeker, responder
        )
        path = folder / f"empathy-{mechanism.value}"
        save_pretrained(model, path, base_encoder="all-MiniLM-L6-v2")
        empathy[mechanism] = str(path)
    risk = AutoModelForSequenceClassification.from_pretrained(
        base,
        num_labels=len(RISK_LABELS),
        id2label=dict(enumerate(RISK_LABELS)),
        label2id={label: i for i, label in enumerate(RISK_LABELS)},
        problem_type="multi_label_classification",
    )
    risk_path = folder / "risk"
    risk.save_pretrained(risk_path)
    AutoTokenizer.from_pretrained(base).save_pretrained(risk_path)
    return BenchModels(
        empathy, str(risk_path), "fresh MiniLM-shaped (all-MiniLM-L6-v2 encoders, untrained heads)"
    )


def prepare_models(mode: str, scratch: Path) -> BenchModels:
    """``auto``: shipped when all four are present, else fresh; ``shipped`` / ``fresh``: exactly that."""
    if mode in ("auto", "shipped"):
        shipped = shipped_models()
        if shipped is not None:
            return shipped
        if mode == "shipped":
            raise SystemExit("the shipped models are not all present under inference/shipped/")
    return fresh_models(scratch)
