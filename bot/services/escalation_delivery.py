"""Escalation delivery: what the cog sends for a case, and each delivery step recorded before and after it.

The rule that makes delivery durable: a case (state ``pending``) is committed before anything is sent; the cog
delivers every pending case at least once (right away, at start-up and in a periodic sweep, ``pending_ids``) and
a two-phase mark (``mark_attempt`` bumps ``delivery_attempts`` and is committed before sending,
``mark_alerted`` records ``alert_message_id`` after) lets it detect a send that may have happened before a
crash, so an alert is never posted twice.

Every plan is read at the moment of sending: ``plan_delivery``, ``plan_redraw`` and ``mark_repinged`` first apply
the member's current consent and the guild's shadow mode (``escalation_cases.apply_current_consent``). Also here:
telling moderators that alerts are stuck (``claim_moderator_notice``, ``delivery_problems``) and re-pinging an
unacknowledged alert (``due_repings``). Plain plans out — no Discord objects.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import AuditLogEntry, Escalation, EscalationConsent, EscalationState, GuildSettings, utcnow
from bot.services import audit, guild_settings
from bot.services.escalation_cases import added_messages, apply_current_consent, audit_case
from bot.services.escalation_policy import ASKED_YES, EscalationKind, Outcome
from bot.services.message_links import jump_url
from bot.sharding import GuildOwnership

log = logging.getLogger(__name__)

# An unacknowledged alert is re-pinged at most this many times (the first ping is not counted).
MAX_REPINGS = 3
# Written into the alert embed's footer: how a re-delivery after a crash recognises its own alert.
ALERT_FOOTER_PREFIX = "PeerCare escalation #"
ERROR_CHARS = 200
# Without sharding (or with every shard in one process) a process delivers every guild's cases.
EVERY_GUILD = GuildOwnership.everything()
# Moderators are told of a stuck alert delivery at most once per problem per guild in this window.
MODERATOR_NOTICE_EVERY = timedelta(hours=6)
MODERATOR_NOTICE_ACTION = "escalation.moderators_notified"


class DeliveryProblem(str, enum.Enum):
    """Why alerts cannot reach moderators: a setup problem only a moderator can fix."""

    NO_ALERT_CHANNEL = "no_alert_channel"
    MISSING_PERMISSIONS = "missing_permissions"
    ALERT_CHANNEL_GONE = "alert_channel_gone"


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
    more_messages: tuple[tuple[int, int], ...] = ()
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

    def link(self, channel_id: int, message_id: int) -> str:
        return jump_url(self.guild_id, channel_id, message_id)


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
        more_messages=tuple(added_messages(row)),
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
    await apply_current_consent(session, row, settings, now)
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
    audit_case(session, "escalation.alerted", row, alert_message_id=alert_message_id)
    if row.consent_used == EscalationConsent.NO.value:
        # The member chose "no" while this alert was on its way (``escalation_cases.apply_changed_consent``): it is
        # closed and owes the redraw that takes it back, as an alert withdrawn after it was posted does.
        row.state = EscalationState.DECLINED
        row.resolved_at = now
        row.alert_outdated_at = now


async def mark_member_asked(session: AsyncSession, escalation_id: int) -> None:
    """The "ask me first" question reached the member: the case waits for their answer.

    Unless they chose "no" while it was on its way (``apply_changed_consent`` narrowed the still-pending case):
    that choice is their answer, so the case closes as declined. Waiting would keep it open for ever, since a
    "yes" button is refused under a standing "no" and no sweep closes unanswered questions.
    """
    row = await _get(session, escalation_id)
    if row.consent_used == EscalationConsent.NO.value:
        row.resolved_at = utcnow()
        await _close_without_moderator(
            session,
            escalation_id,
            EscalationState.DECLINED,
            None,
            "escalation.member_asked",
            declined_meanwhile=True,
        )
        return
    row.state = EscalationState.AWAITING_MEMBER
    row.last_error = None
    audit_case(session, "escalation.member_asked", row)


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
    audit_case(session, action, row, **details)


async def mark_failed(session: AsyncSession, escalation_id: int, error: str, now: datetime) -> None:
    """A send failed (no alert channel, 403, ...): keep the case pending for the sweep and tell moderators."""
    row = await _get(session, escalation_id)
    first_time_for_this_error = row.last_error != error[:ERROR_CHARS]
    row.last_error = error[:ERROR_CHARS]
    if first_time_for_this_error:
        audit_case(
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
    await apply_current_consent(session, row, settings, now)
    if row.state is not EscalationState.ALERTED or settings.shadow_mode:
        return False
    row.ping_count += 1
    row.last_pinged_at = now
    audit_case(session, "escalation.repinged", row, ping_count=row.ping_count)
    return True


async def _get(session: AsyncSession, escalation_id: int) -> Escalation:
    row = await session.get(Escalation, escalation_id)
    if row is None:
        raise LookupError(f"escalation {escalation_id} does not exist")
    return row
