"""Custom bot events that connect feature cogs without importing each other."""

from __future__ import annotations

from dataclasses import dataclass

from inference.types import RiskResult

# bot.dispatch(SEEKER_RISK_SCORED, SeekerRiskScored(...)) -> listeners named on_peercare_seeker_risk_scored
SEEKER_RISK_SCORED = "peercare_seeker_risk_scored"


@dataclass(frozen=True, slots=True)
class SeekerRiskScored:
    """A seeker post in a support channel was risk-scored (tier under the model's default thresholds).

    ``excerpt`` is a short slice of the post for a moderator alert; it is stored only if an alert is made,
    and only until retention expires.
    """

    guild_id: int
    channel_id: int
    message_id: int
    author_id: int
    risk: RiskResult
    excerpt: str
    jump_url: str
