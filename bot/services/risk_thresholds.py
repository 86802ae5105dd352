"""A guild's risk thresholds: parse what a moderator typed, validate it, merge it over the model's defaults."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from bot.services.errors import UserFacingError
from inference.types import RiskThresholds

log = logging.getLogger(__name__)

RESET_WORDS = frozenset({"default", "defaults", "reset"})
_PAIR = re.compile(r"^\s*([A-Za-z][\w\- ]*?)\s*[=:]\s*(\S+)\s*$")


def _probability(option: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise UserFacingError(
            f"{option}: “{raw[:40]}” is not a number; use a value between 0 and 1, like 0.8."
        ) from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise UserFacingError(f"{option}: {raw[:40]} is not between 0 and 1; use a value like 0.8.")
    return value


def parse_option(option: str, text: str, labels: Iterable[str]) -> dict[str, float] | None:
    """``0.8`` (every main label) or ``suicidal=0.8, depression=0.9``; ``default`` resets (returns None)."""
    known = {label.casefold(): label for label in labels}
    text = text.strip()
    if text.casefold() in RESET_WORDS:
        return None
    if not text:
        raise UserFacingError(f"{option} is empty: give a value between 0 and 1, or `default`.")
    if _PAIR.match(text) is None and "," not in text and ";" not in text:
        value = _probability(option, text)
        return {label: value for label in known.values()}
    values: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in re.split(r"[,;]", text))):
        match = _PAIR.match(part)
        if match is None:
            raise UserFacingError(
                f"{option}: I could not read “{part[:40]}”. Write `label=0.8`, separated by commas "
                f"(labels: {', '.join(sorted(known.values()))})."
            )
        name, raw = match.group(1).strip(), match.group(2)
        label = known.get(name.casefold())
        if label is None:
            raise UserFacingError(
                f"{option}: “{name[:40]}” is not a risk label; use one of {', '.join(sorted(known.values()))}."
            )
        values[label] = _probability(option, raw)
    return values


def as_mapping(thresholds: RiskThresholds) -> dict[str, dict[str, float]]:
    return {"elevated": dict(thresholds.elevated), "high": dict(thresholds.high)}


def from_mapping(stored: Mapping[str, Any] | None, defaults: RiskThresholds) -> RiskThresholds:
    """A guild's stored thresholds (None = the model card's defaults) as the inference type."""
    if not stored:
        return defaults
    return RiskThresholds(
        elevated={**defaults.elevated, **_still_used(stored.get("elevated"), defaults.elevated)},
        high={**defaults.high, **_still_used(stored.get("high"), defaults.high)},
    )


def _still_used(stored: Mapping[str, Any] | None, defaults: Mapping[str, float]) -> dict[str, float]:
    """A guild's values for the labels the model still uses in that tier.

    Why: when a model stops deciding a tier with a label (the crisis head took the high tier from
    ``suicidal``, which paged moderators for "hello"), a value a moderator once stored for it must not
    bring the old behaviour back.
    """
    return {label: float(value) for label, value in dict(stored or {}).items() if label in defaults}


def updated(
    stored: Mapping[str, Any] | None,
    defaults: RiskThresholds,
    *,
    high: str | None = None,
    elevated: str | None = None,
) -> dict[str, dict[str, float]] | None:
    """The new stored value after a `/peercare setup` (None when everything is back to the defaults)."""
    current = from_mapping(stored, defaults)
    new_high, new_elevated = dict(current.high), dict(current.elevated)
    if high is not None:
        parsed = parse_option("high_threshold", high, defaults.high)
        new_high = dict(defaults.high) if parsed is None else {**new_high, **parsed}
    if elevated is not None:
        labels = defaults.elevated or defaults.high
        parsed = parse_option("elevated_threshold", elevated, labels)
        new_elevated = dict(defaults.elevated) if parsed is None else {**new_elevated, **parsed}
    for label, high_value in new_high.items():
        elevated_value = new_elevated.get(label)
        if elevated_value is not None and elevated_value > high_value:
            raise UserFacingError(
                f"The elevated threshold for {label} ({elevated_value:g}) must not be above its high threshold "
                f"({high_value:g})."
            )
    result = RiskThresholds(elevated=new_elevated, high=new_high)
    return None if result == defaults else as_mapping(result)


def describe(thresholds: RiskThresholds) -> str:
    """One line per label for the setup summary, e.g. ``suicidal: high ≥ 0.80, elevated ≥ 0.50``."""
    lines = []
    for label in sorted(set(thresholds.high) | set(thresholds.elevated)):
        parts = []
        if label in thresholds.high:
            parts.append(f"high ≥ {thresholds.high[label]:.2f}")
        if label in thresholds.elevated:
            parts.append(f"elevated ≥ {thresholds.elevated[label]:.2f}")
        lines.append(f"{label}: {', '.join(parts)}")
    return "\n".join(lines)
