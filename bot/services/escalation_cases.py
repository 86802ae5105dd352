"""Escalation cases: open a member's case for a high-risk message, or add the message to their open one.

One case per member at a time: ``handle_seeker_risk`` tiers a judged message with the guild's thresholds, stores
the tier and opens (or joins) the case in the unit of work that stored the message's risk, and returns the case
to deliver. Ids, tiers and times in; database rows out — no Discord objects.

A case's consent is not frozen when it opens: every send, redraw and re-ping (``escalation_delivery``) and every
message that joins the case first narrows it to the member's consent as it is at that moment
(``apply_current_consent``), and a member who changes their choice with ``/peercare safety`` has it applied to their
open cases at once (``apply_changed_consent``). That rule, and reading a case and auditing its steps (``get``,
``audit_case``), live here once; the delivery and action modules import them, so imports run one way:
``escalation_policy`` <- ``escalation_cases`` <- ``escalation_delivery``, ``escalation_actions``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Escalation, EscalationConsent, EscalationState, GuildSettings, RiskAssessment
from bot.services import audit, consent, guild_settings
from bot.services.escalation_policy import (
    ASKED_YES,
    CLOSED_STATES,
    EscalationKind,
    Outcome,
    decide_outcome,
    main_labels,
)
from bot.services.risk_tier import TierDecision, decide_tier
from inference.types import RiskResult, RiskThresholds, RiskTier

# A member's case stops collecting new messages after this long without one (Settings.case_quiet_minutes).
DEFAULT_QUIET = timedelta(minutes=240)


# -- opening a case, or adding to the member's open one ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScoredMessage:
    """A member's message in a support channel, risk-judged (alone or as the last of a burst).

    ``excerpt`` is a short slice of what was judged, for a moderator alert; it is stored only on a case a
    moderator may read, and only until retention expires. ``risk`` holds probabilities, never text.
    """

    guild_id: int
    channel_id: int
    message_id: int
    author_id: int
    risk: RiskResult
    excerpt: str


@dataclass(frozen=True, slots=True)
class PostDecision:
    """What one judged message led to: its guild tier and the case to deliver (opened or joined), if any."""

    tier: RiskTier
    outcome: Outcome
    escalation_id: int | None
    joined: bool = False


async def record_post_tier(
    session: AsyncSession, scored: ScoredMessage, decision: TierDecision, now: datetime
) -> None:
    """Store the guild's tier on the message's risk assessment (probabilities and ids; no text)."""
    row = await session.scalar(
        select(RiskAssessment).where(
            RiskAssessment.source == "post", RiskAssessment.message_id == scored.message_id
        )
    )
    if row is None:
        row = RiskAssessment(
            guild_id=scored.guild_id,
            channel_id=scored.channel_id,
            message_id=scored.message_id,
            author_id=scored.author_id,
            source="post",
            probabilities=dict(scored.risk.probabilities),
            phrase_matches=list(scored.risk.phrase_matches),
            scored_at=now,
        )
        session.add(row)
    row.tier = decision.tier.value
    row.triggered_labels = list(decision.labels)


async def open_escalation(
    session: AsyncSession,
    *,
    guild_id: int,
    channel_id: int | None,
    message_id: int,
    member_id: int,
    kind: EscalationKind,
    tier: RiskTier,
    labels: Sequence[str],
    excerpt: str | None,
    consent_choice: EscalationConsent,
    now: datetime,
    retention_days: int,
) -> tuple[Escalation, bool]:
    """Write the case (state pending) before anything is sent. Returns (row, created); never a duplicate.

    The excerpt is kept only when a moderator may read it (consent yes, or ask-first until the member
    answers) and only until retention expires.
    """
    existing = await find_for_message(session, guild_id, kind, message_id)
    if existing is not None:
        return existing, False
    keep_text = consent_choice is not EscalationConsent.NO and retention_days > 0 and bool(excerpt)
    row = Escalation(
        guild_id=guild_id,
        channel_id=channel_id,
        message_id=message_id,
        member_id=member_id,
        kind=kind.value,
        tier=tier.value,
        labels=list(labels),
        excerpt=excerpt if keep_text else None,
        text_expires_at=now + timedelta(days=retention_days) if keep_text else None,
        state=EscalationState.PENDING,
        consent_used=consent_choice.value,
        created_at=now,
        last_message_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:
        # Another task opened the same case between our check and insert.
        existing = await find_for_message(session, guild_id, kind, message_id)
        assert existing is not None
        return existing, False
    audit_case(
        session, "escalation.opened", row, kind=kind.value, tier=tier.value, consent=consent_choice.value
    )
    return row, True


async def find_for_message(
    session: AsyncSession, guild_id: int, kind: EscalationKind, message_id: int
) -> Escalation | None:
    return await session.scalar(
        select(Escalation).where(
            Escalation.guild_id == guild_id,
            Escalation.kind == kind.value,
            Escalation.message_id == message_id,
        )
    )


def case_messages(row: Escalation) -> list[tuple[int | None, int]]:
    """(channel_id, message_id) of every message in a case, the one that opened it first."""
    return [(row.channel_id, row.message_id), *added_messages(row)]


def added_messages(row: Escalation) -> list[tuple[int, int]]:
    """(channel_id, message_id) of the messages that joined a case after the one that opened it (always in a
    channel: only posts join a case)."""
    return [(int(channel_id), int(message_id)) for channel_id, message_id in (row.more_messages or ())]


async def current_case(
    session: AsyncSession, guild_id: int, member_id: int, now: datetime, quiet: timedelta
) -> Escalation | None:
    """The member's case that a new high-risk message joins instead of paging again, if any.

    That is their latest post case unless a moderator resolved it (or called it a false alarm), or it has
    been quiet (no new message) for ``quiet``. A case closed without a moderator (private resources sent,
    the member declined) still counts while recent: the member is not messaged again for every line.
    """
    row = await session.scalar(
        select(Escalation)
        .where(
            Escalation.guild_id == guild_id,
            Escalation.member_id == member_id,
            Escalation.kind == EscalationKind.POST.value,
        )
        .order_by(Escalation.id.desc())
        .limit(1)
    )
    if row is None or row.state in (EscalationState.RESOLVED, EscalationState.FALSE_ALARM):
        return None
    last = row.last_message_at or row.created_at
    return row if now - last < quiet else None


async def join_case(
    session: AsyncSession,
    row: Escalation,
    scored: ScoredMessage,
    labels: Sequence[str],
    now: datetime,
    *,
    retention_days: int,
) -> bool:
    """Add a high-risk message to the member's case: no new ping, the posted alert is redrawn.

    Returns False when the message is already part of the case (a re-run, an edit scored again).
    """
    earlier = case_messages(row)
    if (scored.channel_id, scored.message_id) in earlier:
        return False
    newest = scored.message_id > max(message_id for _, message_id in earlier)  # snowflakes grow with time
    row.more_messages = [*(row.more_messages or ()), [scored.channel_id, scored.message_id]]
    row.last_message_at = now
    row.labels = list(dict.fromkeys([*(row.labels or ()), *labels]))
    moderator_may_read = row.consent_used != EscalationConsent.NO.value and row.state not in CLOSED_STATES
    if moderator_may_read and newest and retention_days > 0 and scored.excerpt:
        # The newest words (a burst's excerpt already holds the lines before it).
        row.excerpt = scored.excerpt
        row.text_expires_at = now + timedelta(days=retention_days)
    # Whether the alert is posted yet or not: the delivery that drew it clears this only if nothing joined since.
    row.alert_outdated_at = now
    audit_case(
        session,
        "escalation.message_added",
        row,
        message_id=scored.message_id,
        messages=len(case_messages(row)),
    )
    return True


async def handle_seeker_risk(
    session: AsyncSession,
    scored: ScoredMessage,
    *,
    defaults: RiskThresholds | None,
    now: datetime,
    retention_days: int,
    quiet: timedelta = DEFAULT_QUIET,
) -> PostDecision:
    """Tier a judged message with the guild's thresholds, record it, and open (or join) the member's case.

    Runs inside the unit of work that stored the message's risk: the caller delivers the returned case.
    """
    settings = await guild_settings.get_or_create(session, scored.guild_id)
    decision = decide_tier(scored.risk, settings.risk_thresholds, defaults)
    await record_post_tier(session, scored, decision, now)
    member = await consent.find(session, scored.guild_id, scored.author_id)
    choice = consent.escalation_consent(settings, member)
    outcome = decide_outcome(decision.tier, choice, shadow_mode=settings.shadow_mode)
    if outcome is Outcome.NOTHING:
        return PostDecision(decision.tier, outcome, None)
    if outcome is Outcome.SHADOW:
        audit.record(
            session,
            "escalation.shadow",
            guild_id=scored.guild_id,
            subject_type="message",
            subject_id=scored.message_id,
            tier=decision.tier.value,
            consent=choice.value,
        )
        return PostDecision(decision.tier, outcome, None)
    labels = main_labels(decision.labels, scored.risk.phrase_matches)
    existing = await find_for_message(session, scored.guild_id, EscalationKind.POST, scored.message_id)
    if existing is not None:
        return PostDecision(decision.tier, outcome, existing.id)
    case = await current_case(session, scored.guild_id, scored.author_id, now, quiet)
    if case is not None:
        # The joined message is shown to moderators by the redraw: only as far as the member allows now.
        await apply_current_consent(session, case, settings, now)
        await join_case(session, case, scored, labels, now, retention_days=retention_days)
        return PostDecision(decision.tier, outcome, case.id, joined=True)
    row, _created = await open_escalation(
        session,
        guild_id=scored.guild_id,
        channel_id=scored.channel_id,
        message_id=scored.message_id,
        member_id=scored.author_id,
        kind=EscalationKind.POST,
        tier=decision.tier,
        labels=labels,
        excerpt=scored.excerpt,
        consent_choice=choice,
        now=now,
        retention_days=retention_days,
    )
    return PostDecision(decision.tier, outcome, row.id)


# -- the member's consent, as it is now ------------------------------------------------------------------


# How far each consent lets a case reach: a change made after the case opened may narrow it, never widen it.
_REACH = {
    EscalationConsent.NO.value: 0,
    EscalationConsent.ASK_FIRST.value: 1,
    EscalationConsent.YES.value: 2,
    ASKED_YES: 2,
}


async def apply_current_consent(
    session: AsyncSession, row: Escalation, settings: GuildSettings, now: datetime
) -> None:
    """Narrow a case to the member's consent as it is now, just before anything about it is sent.

    A case opened under "yes" follows a later "ask me first" (the member is asked before any alert) and a
    later "no" withdraws it; a later, wider choice is for later posts, never for one made under a narrower
    one. An "ask me first" yes to this very case stands until the member chooses "no".

    Withdrawn ("no"): the excerpt goes at once and the withdrawal is audited. A case not yet delivered then
    goes the way of any "no" case (private resources, nobody else told, closed); a posted alert is closed
    (declined) and marked outdated, so the cog's redraw takes it back out of the alert channel.
    """
    if row.state in CLOSED_STATES:
        return
    member = await consent.find(session, row.guild_id, row.member_id)
    current = consent.escalation_consent(settings, member).value
    used = row.consent_used or EscalationConsent.ASK_FIRST.value
    if _REACH[current] >= _REACH[used] or (used == ASKED_YES and current != EscalationConsent.NO.value):
        return
    previous_state = row.state
    if current == EscalationConsent.ASK_FIRST.value:
        if row.state is not EscalationState.PENDING:
            return  # already posted: moderators know; re-pings and redraws go on
        row.consent_used = current
        audit_case(session, "escalation.consent_narrowed", row, consent=current)
        return
    row.consent_used = current
    row.excerpt = None
    row.text_expires_at = None
    if row.state is not EscalationState.PENDING:
        row.state = EscalationState.DECLINED
        row.resolved_at = now
        if row.alert_message_id is not None:
            row.alert_outdated_at = now
    audit_case(session, "escalation.consent_withdrawn", row, previous_state=previous_state.value)


async def apply_changed_consent(
    session: AsyncSession, guild_id: int, member_id: int, now: datetime
) -> list[int]:
    """A member just changed their choice (``/peercare safety``): narrow their open cases now, not at the next send.

    Each open case goes through ``apply_current_consent``, the rule every send and re-ping applies: after a
    "no" an unanswered question is closed, a posted alert is closed with its excerpt gone and owes a redraw that
    takes it back, and a case not delivered yet becomes a "no" case (private resources, nobody else told).
    Returns the cases whose delivery or redraw is owed now; the caller delivers them.
    """
    settings = await guild_settings.get_or_create(session, guild_id)
    rows = await session.scalars(
        select(Escalation)
        .where(
            Escalation.guild_id == guild_id,
            Escalation.member_id == member_id,
            Escalation.state.not_in(CLOSED_STATES),
        )
        .order_by(Escalation.id)
    )
    owed = []
    for row in rows:
        before = (row.state, row.consent_used)
        await apply_current_consent(session, row, settings, now)
        if (row.state, row.consent_used) != before and (
            row.state is EscalationState.PENDING or row.alert_outdated_at is not None
        ):
            owed.append(row.id)
    return owed


# -- reading a case, auditing its steps ------------------------------------------------------------------


async def get(session: AsyncSession, escalation_id: int) -> Escalation | None:
    return await session.get(Escalation, escalation_id)


def audit_case(session: AsyncSession, action: str, row: Escalation, **details: Any) -> None:
    """Audit a step of a case: forget-me finds a member's entries by subject "escalation" (``privacy.MEMBER_DATA``)."""
    audit.record_about(session, action, row, subject_type="escalation", **details)
