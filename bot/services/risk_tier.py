"""The one place a message's risk tier is decided for a guild, and the one place the default thresholds live.

The tier is always ``assign_tier(probabilities, thresholds, phrase_matches)`` with the guild's own thresholds
over the risk model card's calibrated defaults. No bot code names a label: which labels serve *high* and which
*elevated* is whatever the model card's thresholds say (a new label such as ``crisis`` needs no code change).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.services.risk_thresholds import from_mapping
from inference.risk.tiers import assign_tier
from inference.types import RiskResult, RiskThresholds, RiskTier

log = logging.getLogger(__name__)


def _read_model_card(source: str) -> RiskThresholds:
    from inference.risk.scorer import RiskScorer

    return RiskScorer.thresholds_for_source(source)


class DefaultThresholds:
    """The risk model card's thresholds for ``RISK_MODEL``, read once off the event loop (no weights)."""

    def __init__(self, source: str | None, read: Callable[[str], RiskThresholds] = _read_model_card) -> None:
        self.source = source
        self._read = read
        self._value: RiskThresholds | None = None

    @property
    def value(self) -> RiskThresholds | None:
        """The thresholds once loaded; None when they could not be read (the model's own tier then stands)."""
        return self._value

    def set(self, thresholds: RiskThresholds | None) -> None:
        self._value = thresholds

    async def load(self) -> RiskThresholds | None:
        if self._value is None and self.source:
            try:
                self._value = await asyncio.to_thread(self._read, self.source)
            except Exception as exc:
                log.warning("cannot read the risk model's default thresholds: %s", type(exc).__name__)
        return self._value


@dataclass(frozen=True, slots=True)
class TierDecision:
    tier: RiskTier
    labels: tuple[str, ...]


def decide_tier(
    risk: RiskResult, guild_thresholds: Mapping[str, Any] | None, defaults: RiskThresholds | None
) -> TierDecision:
    """The guild's tier for a scored message: its thresholds (None = the model card's) over the defaults.

    Without readable defaults and without guild thresholds, the tier the scorer gave with the model card's
    thresholds stands (it is the same decision). The crisis-phrase layer only ever raises a tier.
    """
    if not guild_thresholds and defaults is None:
        return TierDecision(risk.tier, tuple(risk.triggered_labels))
    if defaults is None:
        # The model card could not be read: the guild's own values are all there is to go by.
        stored = dict(guild_thresholds or {})
        thresholds = RiskThresholds(
            elevated=dict(stored.get("elevated") or {}), high=dict(stored.get("high") or {})
        )
    else:
        thresholds = from_mapping(guild_thresholds, defaults)
    tier, labels = assign_tier(risk.probabilities, thresholds, risk.phrase_matches)
    return TierDecision(tier, tuple(labels))


def stored_risk(
    probabilities: Mapping[str, float] | None,
    tier: str,
    labels: Sequence[str] | None,
    phrase_matches: Sequence[str] | None,
) -> RiskResult:
    """A stored risk row as the inference type, so it can be tiered again (probabilities, never text)."""
    return RiskResult(
        probabilities=dict(probabilities or {}),
        tier=RiskTier(tier),
        triggered_labels=tuple(labels or ()),
        phrase_matches=tuple(phrase_matches or ()),
    )
