"""Escalation policy: what a judged message or check-in answer leads to, and which case states follow which.

Pure rules, no database and no Discord: the outcome of a tier under a member's consent and the guild's shadow
mode (``decide_outcome``), the sentence ``peercare score`` prints for it, the reason a moderator reads, and the
tables of case states (open, closed, which moderator step is allowed from where). The case, delivery and action
modules (``escalation_cases``, ``escalation_delivery``, ``escalation_actions``) all read them from here, so each
rule is written once.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from bot.db.models import EscalationConsent, EscalationState
from inference.types import RiskTier

# ``consent_used`` of an "ask me first" case the member said yes to.
ASKED_YES = "asked_yes"


class EscalationKind(str, enum.Enum):
    POST = "post"  # a seeker post in a support channel
    CHECKIN = "checkin"  # a check-in answer: "struggling" or a high-tier text
    TALK_REQUEST = "talk_request"  # a check-in "I'd like to talk to someone"


class Outcome(str, enum.Enum):
    """What happens to one scored post or check-in answer."""

    NOTHING = "nothing"  # not high tier
    SHADOW = "shadow"  # guild in shadow mode: recorded and audited, nothing sent
    ALERT_MODERATORS = "alert_moderators"
    ASK_MEMBER = "ask_member"
    PRIVATE_RESOURCES = "private_resources"


class ModeratorAction(str, enum.Enum):
    ACKNOWLEDGE = "acknowledge"
    CLAIM = "claim"
    RESOLVE = "resolve"
    FALSE_ALARM = "false_alarm"


OPEN_ALERT_STATES = frozenset(
    {EscalationState.ALERTED, EscalationState.ACKNOWLEDGED, EscalationState.CLAIMED}
)
CLOSED_STATES = frozenset(
    {
        EscalationState.RESOLVED,
        EscalationState.FALSE_ALARM,
        EscalationState.MEMBER_SUPPORTED,
        EscalationState.DECLINED,
    }
)
ALLOWED_FROM: dict[ModeratorAction, frozenset[EscalationState]] = {
    ModeratorAction.ACKNOWLEDGE: frozenset({EscalationState.ALERTED}),
    ModeratorAction.CLAIM: frozenset({EscalationState.ALERTED, EscalationState.ACKNOWLEDGED}),
    ModeratorAction.RESOLVE: OPEN_ALERT_STATES,
    ModeratorAction.FALSE_ALARM: OPEN_ALERT_STATES,
}
STATE_AFTER = {
    ModeratorAction.ACKNOWLEDGE: EscalationState.ACKNOWLEDGED,
    ModeratorAction.CLAIM: EscalationState.CLAIMED,
    ModeratorAction.RESOLVE: EscalationState.RESOLVED,
    ModeratorAction.FALSE_ALARM: EscalationState.FALSE_ALARM,
}


# -- deciding ---------------------------------------------------------------------------------------------


def decide_outcome(tier: RiskTier, consent_choice: EscalationConsent, *, shadow_mode: bool) -> Outcome:
    """The one rule: only a high tier acts, shadow mode never sends, consent picks who hears about it."""
    if tier is not RiskTier.HIGH:
        return Outcome.NOTHING
    if shadow_mode:
        return Outcome.SHADOW
    return {
        EscalationConsent.YES: Outcome.ALERT_MODERATORS,
        EscalationConsent.ASK_FIRST: Outcome.ASK_MEMBER,
        EscalationConsent.NO: Outcome.PRIVATE_RESOURCES,
    }[consent_choice]


def describe_default_outcome(
    tier: RiskTier,
    consent: EscalationConsent = EscalationConsent.ASK_FIRST,
) -> str:
    """One sentence for `peercare score`: what the bot would do with this tier under this consent.

    The default consent is a new guild's default (ask me first); shadow mode is left out on purpose: the
    sentence says what PeerCare does once it is live.
    """
    outcome = decide_outcome(tier, consent, shadow_mode=False)
    return {
        Outcome.NOTHING: f"No escalation: the post's risk tier is {tier.value}; only a high tier acts.",
        Outcome.ALERT_MODERATORS: (
            "Moderators alerted: an alert with a link, a short excerpt, the tier and labels is posted in the "
            "moderator channel, pinging the moderator role (the member allowed it)."
        ),
        Outcome.ASK_MEMBER: (
            "Member asked first: a private DM with crisis resources asks whether they would like a moderator "
            "to reach out; moderators see nothing unless they say yes."
        ),
        Outcome.PRIVATE_RESOURCES: (
            "Private crisis resources: the member gets a warm DM with the server's crisis resources; "
            "no moderator sees their message."
        ),
        Outcome.SHADOW: "Shadow mode: recorded only.",
    }[outcome]


def main_labels(labels: Sequence[str], phrase_matches: Sequence[str]) -> list[str]:
    """What a moderator reads as the reason: the triggered labels, else that a crisis phrase matched."""
    return list(labels) or (["crisis phrase"] if phrase_matches else [])
