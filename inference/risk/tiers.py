"""Turn per-label risk probabilities (and crisis-phrase matches) into a risk tier: none, elevated or high.

A pure function so the bot can re-apply it with a guild's own tuned thresholds without running a model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from inference.types import RiskThresholds, RiskTier

log = logging.getLogger(__name__)


def phrase_tier(phrase_match: str) -> RiskTier:
    """The tier a phrase match asks for: its ``tier:`` prefix (``elevated:want_to_die``).

    A match without a known prefix counts as HIGH: an unrecognised crisis phrase must not be under-read.
    """
    prefix, sep, _ = phrase_match.partition(":")
    if sep:
        try:
            return RiskTier(prefix.strip().lower())
        except ValueError:
            pass
    return RiskTier.HIGH


def labels_at_or_above(probabilities: Mapping[str, float], cutoffs: Mapping[str, float]) -> tuple[str, ...]:
    """Labels whose probability reaches their cut-off, strongest first (labels without a cut-off never do)."""
    hits = [
        label
        for label, cutoff in cutoffs.items()
        if label in probabilities and float(probabilities[label]) >= float(cutoff)
    ]
    return tuple(sorted(hits, key=lambda label: (-float(probabilities[label]), label)))


def assign_tier(
    probabilities: Mapping[str, float],
    thresholds: RiskThresholds,
    phrase_matches: Sequence[str] = (),
) -> tuple[RiskTier, tuple[str, ...]]:
    """The risk tier and the labels that triggered it.

    - HIGH when any label reaches its ``high`` cut-off; else ELEVATED when any label reaches its ``elevated``
      (or ``high``) cut-off; else NONE. Labels absent from a mapping never raise the tier on their own.
    - Phrase matches may raise the tier to the one each asks for, never lower it.
    - The triggered labels are those that reached the final tier's cut-off, strongest first; when only a
      phrase raised the tier there are none.
    """
    high = labels_at_or_above(probabilities, thresholds.high)
    if high:
        model_tier, triggered = RiskTier.HIGH, high
    else:
        # A label at or above its high cut-off is also elevated, even when it has no elevated cut-off.
        elevated_cutoffs = {**thresholds.high, **thresholds.elevated}
        elevated = labels_at_or_above(probabilities, elevated_cutoffs)
        model_tier, triggered = (RiskTier.ELEVATED, elevated) if elevated else (RiskTier.NONE, ())
    tier = RiskTier.max(model_tier, *(phrase_tier(match) for match in phrase_matches))
    return tier, triggered if tier == model_tier else ()
