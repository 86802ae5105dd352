"""Read and write what a risk model folder holds besides weights: PeerCare's head format and the calibration."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.errors import ModelLoadError
from inference.types import RiskThresholds

log = logging.getLogger(__name__)

POOLED_CONFIG_FILE = "risk_model.json"
POOLED_HEAD_FILE = "risk_head.safetensors"
CALIBRATION_FILE = "risk_calibration.json"
POOLED_FORMAT = "peercare-pooled-risk/1"
# Written only by models whose adapter answers some labels (``adapter_labels``): a reader that knows
# only /1 would apply the adapter to every label, so it must refuse these folders instead.
SPLIT_POOLED_FORMAT = "peercare-pooled-risk/2"
ADAPTED_HEAD_FILE = "risk_head_adapted.safetensors"
PROBLEM_TYPES = ("multi_label_classification", "single_label_classification")
# Key of the one temperature shared by all labels of a softmax model.
ALL_LABELS = "*"

# Label names that mean "no risk": they never raise a tier.
_NEUTRAL_WORDS = ("neutral", "normal", "none", "no_risk", "norisk", "control", "supportive", "not_", "non_")
_SUICIDE_WORDS = ("suicid", "self_harm", "selfharm", "self-harm", "ideation", "attempt", "behavior", "crisis")


@dataclass(frozen=True)
class PooledConfig:
    """PeerCare's compact format: a frozen base encoder (named, not copied) + a small trained head."""

    base_model: str
    labels: tuple[str, ...]
    problem_type: str
    layers: tuple[int, ...]
    in_features: int
    hidden: int = 0
    window_tokens: int = 256
    overlap_tokens: int = 64
    adapter: str | None = None  # a PEFT LoRA folder inside the model folder, if the encoder was tuned
    # When set, the tuned encoder (with ``adapted_head``) answers only these labels; the others come from
    # the frozen encoder and the main head. Why: tuning helped stress/depression on dev but, in an earlier
    # attempt, made the suicidal label (which alone decides the high tier) noisier on short chat.
    adapter_labels: tuple[str, ...] = ()
    adapted_head: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.adapter_labels:
            return
        unknown = sorted(set(self.adapter_labels) - set(self.labels))
        if unknown or not self.adapter or not self.adapted_head:
            raise ValueError(
                f"adapter_labels {list(self.adapter_labels)} need an adapter and an adapted head, and must "
                f"be labels of the model {list(self.labels)}"
            )

    def to_json(self) -> dict[str, Any]:
        split = (
            {"adapter_labels": list(self.adapter_labels), "adapted_head": self.adapted_head}
            if self.adapter_labels
            else {}
        )
        return {
            "format": SPLIT_POOLED_FORMAT if self.adapter_labels else POOLED_FORMAT,
            "base_model": self.base_model,
            "labels": list(self.labels),
            "problem_type": self.problem_type,
            "layers": list(self.layers),
            "in_features": self.in_features,
            "hidden": self.hidden,
            "window_tokens": self.window_tokens,
            "overlap_tokens": self.overlap_tokens,
            "adapter": self.adapter,
            **split,
            **self.extra,
        }


@dataclass(frozen=True)
class Calibration:
    """Temperatures (logit divisors) per label and the tier thresholds chosen on a dev split."""

    temperature: dict[str, float]
    thresholds: RiskThresholds
    method: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "temperature": self.temperature,
            "thresholds": {"elevated": self.thresholds.elevated, "high": self.thresholds.high},
        }


def _read_json(path: Path, *, setting: str | None) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path.name} in {path.parent}: {exc}", setting=setting) from exc


def is_pooled_folder(folder: Path) -> bool:
    return (folder / POOLED_CONFIG_FILE).is_file()


def read_pooled_config(folder: Path, *, setting: str | None = None) -> PooledConfig:
    data = _read_json(folder / POOLED_CONFIG_FILE, setting=setting)
    if data.get("format") not in (POOLED_FORMAT, SPLIT_POOLED_FORMAT):
        raise ModelLoadError(
            f"{folder / POOLED_CONFIG_FILE} is not in format {POOLED_FORMAT} or {SPLIT_POOLED_FORMAT}",
            setting=setting,
        )
    known = {
        "format",
        "base_model",
        "labels",
        "problem_type",
        "layers",
        "in_features",
        "hidden",
        "window_tokens",
        "overlap_tokens",
        "adapter",
        "adapter_labels",
        "adapted_head",
    }
    split = data.get("format") == SPLIT_POOLED_FORMAT
    if split and not data.get("adapter_labels"):
        raise ModelLoadError(
            f"{folder / POOLED_CONFIG_FILE} is in format {SPLIT_POOLED_FORMAT} but names no adapter_labels",
            setting=setting,
        )
    try:
        return PooledConfig(
            base_model=str(data["base_model"]),
            labels=tuple(data["labels"]),
            problem_type=str(data["problem_type"]),
            layers=tuple(int(layer) for layer in data["layers"]),
            in_features=int(data["in_features"]),
            hidden=int(data.get("hidden", 0)),
            window_tokens=int(data.get("window_tokens", 256)),
            overlap_tokens=int(data.get("overlap_tokens", 64)),
            adapter=data.get("adapter"),
            adapter_labels=tuple(data.get("adapter_labels") or ()) if split else (),
            adapted_head=data.get("adapted_head") if split else None,
            extra={key: value for key, value in data.items() if key not in known},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{folder / POOLED_CONFIG_FILE} is not valid: {exc}", setting=setting) from exc


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read_calibration(folder: Path, *, setting: str | None = None) -> Calibration | None:
    path = folder / CALIBRATION_FILE
    if not path.is_file():
        return None
    data = _read_json(path, setting=setting)
    thresholds = data.get("thresholds") or {}
    return Calibration(
        temperature={str(k): float(v) for k, v in (data.get("temperature") or {}).items()},
        thresholds=RiskThresholds(
            elevated={str(k): float(v) for k, v in (thresholds.get("elevated") or {}).items()},
            high={str(k): float(v) for k, v in (thresholds.get("high") or {}).items()},
        ),
        method=str(data.get("method", "")),
    )


def is_neutral_label(label: str) -> bool:
    name = label.casefold().replace(" ", "_")
    return any(name == word or name.startswith(word) for word in _NEUTRAL_WORDS)


def sane_default_thresholds(labels: tuple[str, ...]) -> RiskThresholds:
    """Thresholds for a model that ships none: suicide-like labels can reach high, depression only when
    near-certain, other conditions (stress, anxiety, ...) only elevated; "no risk" labels never count."""
    elevated: dict[str, float] = {}
    high: dict[str, float] = {}
    for label in labels:
        name = label.casefold()
        if is_neutral_label(label):
            continue
        if any(word in name for word in _SUICIDE_WORDS):
            elevated[label], high[label] = 0.3, 0.5
        elif "depress" in name:
            elevated[label], high[label] = 0.5, 0.9
        else:
            elevated[label] = 0.7
    return RiskThresholds(elevated=elevated, high=high)
