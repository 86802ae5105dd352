"""Escalation: decide what a high-risk post leads to under stored consent, and move each case through its states.

Ids, tiers and times in; database rows and plain plans out — no Discord objects. The rule that makes delivery
durable: an ``Escalation`` row (state ``pending``) is committed before anything is sent; the cog delivers
every pending row at least once (right away, at start-up and in a periodic sweep) and a two-phase mark
(``delivery_attempts`` bumped and committed before sending, ``alert_message_id`` after) lets it detect a
send that may have happened before a crash, so an alert is never posted twice.

The rule that keeps delivery honest: a case's consent is not frozen when it opens. Every send and every
re-ping reads the member's consent and the guild's shadow mode as they are at that moment
(``_apply_current_consent``); see ``plan_delivery``, ``plan_redraw`` and ``mark_repinged``. A member who changes
their choice with ``/peercare safety`` has it applied to their open cases at once (``apply_changed_consent``).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import (
    AuditLogEntry,
    Escalation,
    EscalationConsent,
    EscalationState,
    GuildSettings,
    RiskAssessment,
    utcnow,
)
from bot.services import audit, consent, guild_settings
from bot.services.errors import UserFacingError
from bot.services.risk_tier import TierDecision, decide_tier
from bot.sharding import GuildOwnership
from inference.types import RiskResult, RiskThresholds, RiskTier

log = logging.getLogger(__name__)

# An unacknowledged alert is re-pinged at most this many times (the first ping is not counted).
MAX_REPINGS = 3
# Written into the alert embed's footer: how a re-delivery after a crash recognises its own alert.
ALERT_FOOTER_PREFIX = "PeerCare escalation #"
ERROR_CHARS = 200
# A member's case stops collecting new messages after this long without one (Settings.case_quiet_minutes).
DEFAULT_QUIET = timedelta(minutes=240)
# ``consent_used`` of an "ask me first" case the member said yes to.
ASKED_YES = "asked_yes"
# Without sharding (or with every shard in one process) a process delivers every guild's cases.
EVERY_GUILD = GuildOwnership.everything()
# Moderators are told of a stuck alert delivery at most once per problem per guild in this window.
MODERATOR_NOTICE_EVERY = timedelta(hours=6)
MODERATOR_NOTICE_ACTION = "escalation.moderators_notified"


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


class DeliveryProblem(str, enum.Enum):
    """Why alerts cannot reach moderators: a setup problem only a moderator can fix."""

    NO_ALERT_CHANNEL = "no_alert_channel"
    MISSING_PERMISSIONS = "missing_permissions"
    ALERT_CHANNEL_GONE = "alert_channel_gone"


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
_ALLOWED_FROM: dict[ModeratorAction, frozenset[EscalationState]] = {
    ModeratorAction.ACKNOWLEDGE: frozenset({EscalationState.ALERTED}),
    ModeratorAction.CLAIM: frozenset({EscalationState.ALERTED, EscalationState.ACKNOWLEDGED}),
    ModeratorAction.RESOLVE: OPEN_ALERT_STATES,
    ModeratorAction.FALSE_ALARM: OPEN_ALERT_STATES,
}
_STATE_AFTER = {
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
    _audit_case(
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
    return [(row.channel_id, row.message_id)] + [
        (int(channel_id), int(message_id)) for channel_id, message_id in (row.more_messages or ())
    ]


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
    _audit_case(
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
        await _apply_current_consent(session, case, settings, now)
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


# -- delivering -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryPlan:
    """Everything the cog needs to deliver one pending case; ``action`` says which message."""

    escalation_id: int
    action: Outcome
    guild_id: int
    member_id: int
    kind: EscalationKind
    tier: str
    labels: tuple[str, ...]
    excerpt: str | None
    channel_id: int | None
    message_id: int
    alert_channel_id: int | None
    moderator_role_id: int | None
    crisis_resources: str
    # True when an earlier attempt may have sent the alert before a crash: look for it before sending.
    may_have_been_sent: bool
    created_at: datetime
    # The member said yes when asked: a moderator reaching out is expected, not a surprise.
    member_said_yes: bool = False
    # Later messages of the member that joined this case (channel_id, message_id), oldest first.
    more_messages: tuple[tuple[int | None, int], ...] = ()
    # Where the case stands, and who moved it there: what the alert's status line shows.
    state: EscalationState = EscalationState.PENDING
    acknowledged_by: int | None = None
    claimed_by: int | None = None
    resolved_by: int | None = None
    alert_message_id: int | None = None
    # When a message last joined after the alert was drawn (None: the alert shows every message).
    alert_outdated_at: datetime | None = None
    # The alert was posted, then the member chose "no": it is taken back (edited to say so), never redrawn.
    consent_withdrawn: bool = False

    @property
    def jump_url(self) -> str | None:
        if self.kind is not EscalationKind.POST or self.channel_id is None:
            return None
        return self.link(self.channel_id, self.message_id)

    def link(self, channel_id: int | None, message_id: int) -> str:
        return f"https://discord.com/channels/{self.guild_id}/{channel_id}/{message_id}"


# How far each consent lets a case reach: a change made after the case opened may narrow it, never widen it.
_REACH = {
    EscalationConsent.NO.value: 0,
    EscalationConsent.ASK_FIRST.value: 1,
    EscalationConsent.YES.value: 2,
    ASKED_YES: 2,
}


async def _apply_current_consent(
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
        _audit_case(session, "escalation.consent_narrowed", row, consent=current)
        return
    row.consent_used = current
    row.excerpt = None
    row.text_expires_at = None
    if row.state is not EscalationState.PENDING:
        row.state = EscalationState.DECLINED
        row.resolved_at = now
        if row.alert_message_id is not None:
            row.alert_outdated_at = now
    _audit_case(session, "escalation.consent_withdrawn", row, previous_state=previous_state.value)


async def apply_changed_consent(
    session: AsyncSession, guild_id: int, member_id: int, now: datetime
) -> list[int]:
    """A member just changed their choice (``/peercare safety``): narrow their open cases now, not at the next send.

    Each open case goes through ``_apply_current_consent``, the rule every send and re-ping applies: after a
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
        await _apply_current_consent(session, row, settings, now)
        if (row.state, row.consent_used) != before and (
            row.state is EscalationState.PENDING or row.alert_outdated_at is not None
        ):
            owed.append(row.id)
    return owed


def _action_for(row: Escalation) -> Outcome:
    choice = row.consent_used or EscalationConsent.ASK_FIRST.value
    if choice in (EscalationConsent.YES.value, ASKED_YES):
        return Outcome.ALERT_MODERATORS
    if choice == EscalationConsent.NO.value:
        return Outcome.PRIVATE_RESOURCES
    return Outcome.ASK_MEMBER


def plan_for(row: Escalation, settings: GuildSettings) -> DeliveryPlan:
    """A case as the cog renders it (also to redraw an alert after a moderator pressed a button)."""
    return DeliveryPlan(
        escalation_id=row.id,
        action=_action_for(row),
        guild_id=row.guild_id,
        member_id=row.member_id,
        kind=EscalationKind(row.kind),
        tier=row.tier,
        labels=tuple(row.labels or ()),
        excerpt=row.excerpt,
        channel_id=row.channel_id,
        message_id=row.message_id,
        alert_channel_id=row.alert_channel_id or settings.alert_channel_id,
        moderator_role_id=settings.moderator_role_id,
        crisis_resources=guild_settings.crisis_resources_text(settings),
        may_have_been_sent=row.delivery_attempts > 0 and row.alert_message_id is None,
        created_at=row.created_at,
        member_said_yes=row.consent_used == ASKED_YES,
        more_messages=tuple(case_messages(row)[1:]),
        state=row.state,
        acknowledged_by=row.acknowledged_by,
        claimed_by=row.claimed_by,
        resolved_by=row.resolved_by,
        alert_message_id=row.alert_message_id,
        alert_outdated_at=row.alert_outdated_at,
        consent_withdrawn=row.consent_used == EscalationConsent.NO.value and row.alert_message_id is not None,
    )


def _owned_by_another_process(row: Escalation, owned: GuildOwnership) -> bool:
    """A case of a guild another process's shards own: that process sends it (its sweep, within a minute).

    A DM answer (a check-in button, an "ask me first" yes) reaches shard 0's process whatever the guild; were
    it to send too, the owner's sweep could post the same alert at the same moment (the per-case lock is in
    one process's memory only).
    """
    if owned.owns(row.guild_id):
        return False
    log.info("escalation %s is guild %s's: its own process delivers it", row.id, row.guild_id)
    return True


async def _settings_to_send(
    session: AsyncSession, row: Escalation, owned: GuildOwnership, now: datetime
) -> GuildSettings | None:
    """The guild's settings for a send from this process, the member's current consent applied to ``row``.

    None when this process sends nothing for the case: another process owns its guild, or the bot has left it.
    """
    if _owned_by_another_process(row, owned):
        return None
    settings = await guild_settings.get_or_create(session, row.guild_id)
    if settings.left_at is not None:
        return None
    await _apply_current_consent(session, row, settings, now)
    return settings


async def plan_delivery(
    session: AsyncSession,
    escalation_id: int,
    now: datetime | None = None,
    *,
    owned: GuildOwnership = EVERY_GUILD,
) -> DeliveryPlan | None:
    """The delivery still owed for a case, or None when nothing is (already delivered, closed, gone).

    Read at the moment of sending: the member's current consent decides the message (a withdrawn consent
    drops the excerpt here), and in shadow mode nothing goes out. The case then stays pending: what a live
    guild owed before shadow mode was switched on is delivered, under the consent of that moment, once it
    is switched off again. ``owned``: the guilds this process delivers for (bot.sharding); another guild's
    case is left to its own process.
    """
    row = await session.get(Escalation, escalation_id)
    if row is None or row.state is not EscalationState.PENDING:
        return None
    settings = await _settings_to_send(session, row, owned, now or utcnow())
    if settings is None or settings.shadow_mode:
        return None
    return plan_for(row, settings)


async def plan_redraw(
    session: AsyncSession,
    escalation_id: int,
    now: datetime | None = None,
    *,
    owned: GuildOwnership = EVERY_GUILD,
) -> DeliveryPlan | None:
    """A posted alert that messages joined since it was drawn: edit it (no ping). None when not owed.

    A withdrawn consent is honoured first (``consent_withdrawn``: take the alert back), even in shadow mode,
    which holds every other redraw. ``owned`` as for ``plan_delivery``.
    """
    row = await session.get(Escalation, escalation_id)
    if row is None or row.alert_outdated_at is None or row.alert_message_id is None:
        return None
    settings = await _settings_to_send(session, row, owned, now or utcnow())
    if settings is None:
        return None
    plan = plan_for(row, settings)
    if settings.shadow_mode and not plan.consent_withdrawn:
        return None
    return plan


async def mark_redrawn(session: AsyncSession, escalation_id: int, drawn: DeliveryPlan) -> None:
    """The alert now shows ``drawn``; a message that joined after it was planned keeps the redraw owed."""
    await _clear_outdated(session, escalation_id, drawn.alert_outdated_at)


async def _clear_outdated(session: AsyncSession, escalation_id: int, seen: datetime | None) -> None:
    # One conditional UPDATE, not a read-then-write: a join committed meanwhile set a newer time and stays.
    if seen is not None:
        await session.execute(
            update(Escalation)
            .where(Escalation.id == escalation_id, Escalation.alert_outdated_at == seen)
            .values(alert_outdated_at=None)
        )


async def pending_ids(session: AsyncSession, owned: GuildOwnership = EVERY_GUILD) -> list[int]:
    """Cases not yet delivered (a crash, a restart, a failed send) or whose alert is outdated: the sweep's list.

    Only in the guilds this process owns (bot.sharding): with several processes, each sweeps its own.
    """
    rows = await session.scalars(
        select(Escalation.id)
        .where(
            (Escalation.state == EscalationState.PENDING)
            | (Escalation.alert_outdated_at.is_not(None) & Escalation.alert_message_id.is_not(None)),
            owned.where(Escalation.guild_id),
        )
        .order_by(Escalation.id)
    )
    return list(rows)


async def mark_attempt(session: AsyncSession, escalation_id: int) -> None:
    """Phase one of the two-phase mark: committed before the send, so a crash after it is detectable."""
    row = await _get(session, escalation_id)
    row.delivery_attempts += 1


async def mark_alerted(
    session: AsyncSession,
    escalation_id: int,
    alert_channel_id: int,
    alert_message_id: int,
    now: datetime,
    *,
    drawn: DeliveryPlan | None = None,
) -> None:
    """Phase two: the alert is posted. ``drawn``: the plan it was drawn from (what it shows)."""
    row = await _get(session, escalation_id)
    if row.alert_message_id is not None:
        return
    row.alert_channel_id = alert_channel_id
    row.alert_message_id = alert_message_id
    row.state = EscalationState.ALERTED
    row.alerted_at = now
    row.last_pinged_at = now
    row.last_error = None
    if drawn is not None:
        await _clear_outdated(session, escalation_id, drawn.alert_outdated_at)
    _audit_case(session, "escalation.alerted", row, alert_message_id=alert_message_id)
    if row.consent_used == EscalationConsent.NO.value:
        # The member chose "no" while this alert was on its way (``apply_changed_consent``): it is closed and
        # owes the redraw that takes it back, as an alert withdrawn after it was posted does.
        row.state = EscalationState.DECLINED
        row.resolved_at = now
        row.alert_outdated_at = now


async def mark_member_asked(session: AsyncSession, escalation_id: int) -> None:
    row = await _get(session, escalation_id)
    row.state = EscalationState.AWAITING_MEMBER
    row.last_error = None
    _audit_case(session, "escalation.member_asked", row)


async def mark_member_supported(
    session: AsyncSession, escalation_id: int, *, dms_closed: bool = False
) -> None:
    """Private resources were sent (or could not be: DMs closed). Either way, no moderator is told."""
    await _close_without_moderator(
        session,
        escalation_id,
        EscalationState.MEMBER_SUPPORTED,
        "member's DMs are closed" if dms_closed else None,
        "escalation.member_supported",
        dms_closed=dms_closed,
    )


async def mark_member_unreachable(session: AsyncSession, escalation_id: int) -> None:
    """ "Ask me first" but their DMs are closed: we cannot ask, so nobody is told (their choice stands)."""
    await _close_without_moderator(
        session,
        escalation_id,
        EscalationState.DECLINED,
        "member's DMs are closed: could not ask",
        "escalation.member_unreachable",
    )


async def _close_without_moderator(
    session: AsyncSession,
    escalation_id: int,
    state: EscalationState,
    error: str | None,
    action: str,
    **details: object,
) -> None:
    """Close a case no moderator will see: its excerpt goes at once, the reason stays (no text)."""
    row = await _get(session, escalation_id)
    row.state = state
    row.excerpt = None
    row.text_expires_at = None
    row.last_error = error
    _audit_case(session, action, row, **details)


async def mark_failed(session: AsyncSession, escalation_id: int, error: str, now: datetime) -> None:
    """A send failed (no alert channel, 403, ...): keep the case pending for the sweep and tell moderators."""
    row = await _get(session, escalation_id)
    first_time_for_this_error = row.last_error != error[:ERROR_CHARS]
    row.last_error = error[:ERROR_CHARS]
    if first_time_for_this_error:
        _audit_case(
            session,
            "escalation.delivery_failed",
            row,
            error=error[:ERROR_CHARS],
            attempts=row.delivery_attempts,
        )
    log.warning("escalation %s not delivered (attempt %d): %s", row.id, row.delivery_attempts, error)


# -- telling moderators that alerts are stuck -------------------------------------------------------------


async def claim_moderator_notice(
    session: AsyncSession, guild_id: int, problem: DeliveryProblem, now: datetime
) -> bool:
    """True when moderators were not told of ``problem`` in this guild within ``MODERATOR_NOTICE_EVERY``.

    The notice is recorded (audit log) before the caller sends it, so it goes out at most once per window
    even across restarts; a crash right after the claim skips one notice, and the next window tells them.
    """
    recent = await session.scalars(
        select(AuditLogEntry).where(
            AuditLogEntry.guild_id == guild_id,
            AuditLogEntry.action == MODERATOR_NOTICE_ACTION,
            AuditLogEntry.created_at > now - MODERATOR_NOTICE_EVERY,
        )
    )
    if any((entry.details or {}).get("problem") == problem.value for entry in recent):
        return False
    entry = audit.record(
        session, MODERATOR_NOTICE_ACTION, guild_id=guild_id, subject_type="guild", problem=problem.value
    )
    entry.created_at = now
    return True


async def delivery_problems(session: AsyncSession, guild_id: int) -> list[str]:
    """Plain sentences for moderators about alerts still waiting to go out (no member, no text)."""
    waiting = await session.scalar(
        select(func.count(Escalation.id)).where(
            Escalation.guild_id == guild_id,
            Escalation.state == EscalationState.PENDING,
            Escalation.last_error.is_not(None),
        )
    )
    if not waiting:
        return []
    last_error = await session.scalar(
        select(Escalation.last_error)
        .where(
            Escalation.guild_id == guild_id,
            Escalation.state == EscalationState.PENDING,
            Escalation.last_error.is_not(None),
        )
        .order_by(Escalation.id.desc())
        .limit(1)
    )
    plural = "s are" if waiting != 1 else " is"
    return [f"{waiting} moderator alert{plural} waiting to be delivered: {last_error}. Retried every minute."]


# -- moderators and members act ---------------------------------------------------------------------------


async def apply_moderator_action(
    session: AsyncSession, escalation_id: int, action: ModeratorAction, moderator_id: int, now: datetime
) -> Escalation:
    """Move an alert one step (who and when are recorded); a step that no longer fits is refused clearly."""
    row = await session.get(Escalation, escalation_id)
    if row is None:
        raise UserFacingError("This alert no longer exists (its data may have been deleted).")
    if row.state not in _ALLOWED_FROM[action]:
        raise UserFacingError(_refusal(row, action))
    if action is ModeratorAction.ACKNOWLEDGE:
        row.acknowledged_by, row.acknowledged_at = moderator_id, now
    elif action is ModeratorAction.CLAIM:
        if row.acknowledged_at is None:
            row.acknowledged_by, row.acknowledged_at = moderator_id, now
        row.claimed_by, row.claimed_at = moderator_id, now
    else:
        if row.acknowledged_at is None:
            row.acknowledged_by, row.acknowledged_at = moderator_id, now
        row.resolved_by, row.resolved_at = moderator_id, now
    previous = row.state
    row.state = _STATE_AFTER[action]
    _audit_case(
        session,
        f"escalation.{action.value}",
        row,
        actor_id=moderator_id,
        previous_state=previous.value,
        state=row.state.value,
    )
    return row


def _refusal(row: Escalation, action: ModeratorAction) -> str:
    if row.state is EscalationState.CLAIMED and action is ModeratorAction.CLAIM:
        return f"<@{row.claimed_by}> has already claimed this alert."
    if row.state in (EscalationState.RESOLVED, EscalationState.FALSE_ALARM):
        verb = "resolved" if row.state is EscalationState.RESOLVED else "marked as a false alarm"
        return f"This alert was already {verb} by <@{row.resolved_by}>."
    if row.state is EscalationState.DECLINED:
        return "The member changed their mind about moderators being told, so this alert was withdrawn."
    if row.state is EscalationState.ACKNOWLEDGED and action is ModeratorAction.ACKNOWLEDGE:
        return f"<@{row.acknowledged_by}> has already acknowledged this alert."
    return f"This alert is {row.state.value.replace('_', ' ')}; it cannot be {action.value.replace('_', ' ')}d now."


async def record_member_answer(
    session: AsyncSession, escalation_id: int, member_id: int, wants_moderator: bool, now: datetime
) -> Escalation:
    """The member answered "ask me first". Yes → pending again, now as an alert; no → closed, text dropped."""
    row = await session.get(Escalation, escalation_id)
    if row is None or row.member_id != member_id:
        raise UserFacingError("This question has expired.")
    if row.state is not EscalationState.AWAITING_MEMBER:
        raise UserFacingError("You already answered this — thank you.")
    if wants_moderator:
        member = await consent.find(session, row.guild_id, member_id)
        settings = await guild_settings.get_or_create(session, row.guild_id)
        if consent.escalation_consent(settings, member) is EscalationConsent.NO:
            # Their standing choice says nobody is told; a button on an older question does not overrule it.
            raise UserFacingError(
                "Your PeerCare setting is that no moderator is told, so nobody has been. If you would like "
                "a moderator to reach out, choose **yes** or **ask** with `/peercare safety` in the server, "
                "then press this button again."
            )
        row.consent_used = ASKED_YES
        row.state = EscalationState.PENDING
        row.delivery_attempts = 0
    else:
        row.state = EscalationState.DECLINED
        row.excerpt = None
        row.text_expires_at = None
        row.resolved_at = now
    _audit_case(
        session, "escalation.member_answered", row, actor_id=member_id, wants_moderator=wants_moderator
    )
    return row


# -- re-pinging -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RepingPlan:
    escalation_id: int
    guild_id: int
    alert_channel_id: int
    alert_message_id: int
    moderator_role_id: int | None
    ping_number: int  # 1 for the first re-ping


async def due_repings(
    session: AsyncSession, now: datetime, owned: GuildOwnership = EVERY_GUILD
) -> list[RepingPlan]:
    """Alerts nobody acknowledged within the guild's ``realert_after_minutes``, at most MAX_REPINGS times.

    None in shadow mode. The member's consent is read again by ``mark_repinged``, just before each ping.
    Only in the guilds this process owns (bot.sharding), so each reminder is sent by one process.
    """
    rows = await session.scalars(
        select(Escalation).where(
            Escalation.state == EscalationState.ALERTED,
            Escalation.alert_message_id.is_not(None),
            Escalation.ping_count < MAX_REPINGS,
            owned.where(Escalation.guild_id),
        )
    )
    plans = []
    for row in rows:
        settings = await guild_settings.get_or_create(session, row.guild_id)
        if settings.left_at is not None or settings.shadow_mode or settings.realert_after_minutes <= 0:
            continue
        last = row.last_pinged_at or row.alerted_at or row.created_at
        if now - last < timedelta(minutes=settings.realert_after_minutes):
            continue
        plans.append(
            RepingPlan(
                escalation_id=row.id,
                guild_id=row.guild_id,
                alert_channel_id=row.alert_channel_id or 0,
                alert_message_id=row.alert_message_id or 0,
                moderator_role_id=settings.moderator_role_id,
                ping_number=row.ping_count + 1,
            )
        )
    return plans


async def mark_repinged(session: AsyncSession, escalation_id: int, now: datetime) -> bool:
    """Count a re-ping; False when it must not be sent.

    Not sent when the alert was acknowledged meanwhile, the guild is in shadow mode now, or the member has
    withdrawn their consent since (then the case is closed here and its alert taken back: ``plan_redraw``).
    """
    row = await _get(session, escalation_id)
    if row.state is not EscalationState.ALERTED:
        return False
    settings = await guild_settings.get_or_create(session, row.guild_id)
    await _apply_current_consent(session, row, settings, now)
    if row.state is not EscalationState.ALERTED or settings.shadow_mode:
        return False
    row.ping_count += 1
    row.last_pinged_at = now
    _audit_case(session, "escalation.repinged", row, ping_count=row.ping_count)
    return True


async def get(session: AsyncSession, escalation_id: int) -> Escalation | None:
    return await session.get(Escalation, escalation_id)


def _audit_case(session: AsyncSession, action: str, row: Escalation, **details: Any) -> None:
    """Audit a step of a case: forget-me finds a member's entries by subject "escalation" (``privacy.MEMBER_DATA``)."""
    audit.record_about(session, action, row, subject_type="escalation", **details)


async def _get(session: AsyncSession, escalation_id: int) -> Escalation:
    row = await session.get(Escalation, escalation_id)
    if row is None:
        raise LookupError(f"escalation {escalation_id} does not exist")
    return row
