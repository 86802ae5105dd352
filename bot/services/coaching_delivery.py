"""Decide whether, when and how a responder hears about their replies: consent, rate limits, digests.

The cog asks for a plan, sends the DM, and records what happened here; each reply earns at most one note
(its ``coaching_status`` leaves ``pending``/``queued`` exactly once).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import CoachingChoice, CoachingDelivery, GuildSettings, ScoredReply
from bot.services import consent, guild_settings
from bot.services.coaching import CoachingNote, ReplyForCoaching, compose_digest, compose_note
from bot.services.reply_scoring import CoachingStatus, jump_url, mechanism_levels

log = logging.getLogger(__name__)

# Replies waiting for consent longer than this are not coached after a late "yes": the moment has passed.
LATE_ACCEPT_WINDOW = timedelta(hours=24)
DAY = timedelta(hours=24)


class PlanKind(str, enum.Enum):
    NOTHING = "nothing"
    INVITE = "invite"
    COACH = "coaching"
    DIGEST = "digest"
    WAIT = "wait"  # wanted, but the interval or the daily cap holds it back


@dataclass(frozen=True, slots=True)
class DeliveryPlan:
    kind: PlanKind
    guild_id: int
    responder_id: int
    reply_message_ids: tuple[int, ...] = ()
    note: CoachingNote | None = None
    due_at: datetime | None = None  # WAIT: the earliest time a note may go out
    reason: str = ""
    # The member never heard from PeerCare (an opt-out guild): the note says what PeerCare is, with buttons.
    first_contact: bool = False


@dataclass(frozen=True, slots=True)
class RateLimit:
    interval: timedelta
    daily_cap: int

    @classmethod
    def of(cls, settings: GuildSettings) -> RateLimit:
        return cls(
            timedelta(minutes=max(0, settings.coaching_interval_minutes)), max(1, settings.coaching_daily_cap)
        )


def _nothing(guild_id: int, responder_id: int, reason: str) -> DeliveryPlan:
    return DeliveryPlan(PlanKind.NOTHING, guild_id, responder_id, reason=reason)


async def _set_status(session: AsyncSession, reply_ids: Sequence[int], status: CoachingStatus) -> None:
    if reply_ids:
        await session.execute(
            update(ScoredReply)
            .where(ScoredReply.reply_message_id.in_(reply_ids))
            .values(coaching_status=status.value)
        )


async def _any_reply_left(session: AsyncSession, responder_id: int, reply_ids: Sequence[int]) -> bool:
    found = await session.scalar(
        select(ScoredReply.id)
        .where(ScoredReply.responder_id == responder_id, ScoredReply.reply_message_id.in_(reply_ids))
        .limit(1)
    )
    return found is not None


async def plan_for_new_reply(session: AsyncSession, reply_message_id: int, now: datetime) -> DeliveryPlan:
    """A reply was scored for the first time: queue it, invite its author, or set it aside (with why)."""
    row = await session.scalar(select(ScoredReply).where(ScoredReply.reply_message_id == reply_message_id))
    if row is None:
        return _nothing(0, 0, "reply not stored")
    guild_id, responder_id = row.guild_id, row.responder_id
    if row.coaching_status != CoachingStatus.PENDING.value:
        return _nothing(guild_id, responder_id, f"already {row.coaching_status}")
    settings = await guild_settings.get_or_create(session, guild_id)
    member = await consent.find(session, guild_id, responder_id)
    if settings.shadow_mode:
        row.coaching_status = CoachingStatus.SHADOW.value
        return _nothing(guild_id, responder_id, "shadow mode")
    if not consent.can_dm(member):
        row.coaching_status = CoachingStatus.DMS_CLOSED.value
        return _nothing(guild_id, responder_id, "DMs closed")
    wants = consent.wants_coaching(settings, member)
    if wants is False:
        row.coaching_status = CoachingStatus.NOT_WANTED.value
        return _nothing(guild_id, responder_id, "coaching off")
    if wants is None:
        row.coaching_status = CoachingStatus.AWAITING_CONSENT.value
        if member is not None and member.coaching_invited_at is not None:
            return _nothing(guild_id, responder_id, "invited, no answer yet")
        member = await consent.get_or_create(session, guild_id, responder_id)
        member.coaching_invited_at = now
        return DeliveryPlan(PlanKind.INVITE, guild_id, responder_id, reply_message_ids=(reply_message_id,))
    row.coaching_status = CoachingStatus.QUEUED.value
    await session.flush()
    return await plan_due(session, guild_id, responder_id, now)


async def plan_due(session: AsyncSession, guild_id: int, responder_id: int, now: datetime) -> DeliveryPlan:
    """What to send now for this responder's queued replies: one note, a digest, or wait for the limits."""
    queued = list(
        await session.scalars(
            select(ScoredReply)
            .where(
                ScoredReply.guild_id == guild_id,
                ScoredReply.responder_id == responder_id,
                ScoredReply.coaching_status == CoachingStatus.QUEUED.value,
            )
            .order_by(ScoredReply.scored_at, ScoredReply.id)
        )
    )
    if not queued:
        return _nothing(guild_id, responder_id, "nothing queued")
    reply_ids = tuple(row.reply_message_id for row in queued)
    settings = await guild_settings.get_or_create(session, guild_id)
    member = await consent.find(session, guild_id, responder_id)
    # Consent or shadow mode may have changed while the replies waited.
    if settings.shadow_mode:
        await _set_status(session, reply_ids, CoachingStatus.SHADOW)
        return _nothing(guild_id, responder_id, "shadow mode")
    if not consent.can_dm(member):
        await _set_status(session, reply_ids, CoachingStatus.DMS_CLOSED)
        return _nothing(guild_id, responder_id, "DMs closed")
    if consent.wants_coaching(settings, member) is not True:
        await _set_status(session, reply_ids, CoachingStatus.NOT_WANTED)
        return _nothing(guild_id, responder_id, "coaching off")

    due_at = await next_allowed_at(session, guild_id, responder_id, RateLimit.of(settings))
    if due_at is not None and due_at > now:
        return DeliveryPlan(
            PlanKind.WAIT, guild_id, responder_id, reply_ids, due_at=due_at, reason="rate limit"
        )

    replies = [
        ReplyForCoaching.from_stored(
            mechanism_levels(row),
            row.rationale_spans or [],
            row.reply_text,
            jump_url(row.guild_id, row.channel_id, row.reply_message_id),
        )
        for row in queued
    ]
    first_contact = member is None or (
        member.coaching is CoachingChoice.UNSET and member.coaching_invited_at is None
    )
    if len(replies) == 1:
        kind, note = PlanKind.COACH, compose_note(replies[0])
    else:
        kind, note = PlanKind.DIGEST, compose_digest(replies)
    return DeliveryPlan(kind, guild_id, responder_id, reply_ids, note=note, first_contact=first_contact)


async def next_allowed_at(
    session: AsyncSession, guild_id: int, responder_id: int, limit: RateLimit
) -> datetime | None:
    """The earliest time the next note may go out (None: no note sent yet, so now)."""
    sent = list(
        await session.scalars(
            select(CoachingDelivery.sent_at)
            .where(
                CoachingDelivery.guild_id == guild_id,
                CoachingDelivery.responder_id == responder_id,
                CoachingDelivery.kind.in_((PlanKind.COACH.value, PlanKind.DIGEST.value)),
                CoachingDelivery.status == "sent",
            )
            .order_by(CoachingDelivery.sent_at.desc())
            .limit(limit.daily_cap)
        )
    )
    if not sent:
        return None
    after_interval = sent[0] + limit.interval
    if len(sent) >= limit.daily_cap:
        # The oldest of the last `cap` notes must leave the 24-hour window first.
        return max(after_interval, sent[-1] + DAY)
    return after_interval


async def record_delivery(
    session: AsyncSession,
    plan: DeliveryPlan,
    status: str,
    now: datetime,
    *,
    dm_message_id: int | None = None,
) -> None:
    """Record a sent (or refused) DM and move its replies on; DMs closed stops all further tries."""
    if plan.reply_message_ids and not await _any_reply_left(
        session, plan.responder_id, plan.reply_message_ids
    ):
        # The member erased their data (or deleted the replies) while the DM was on its way: keep nothing.
        log.info(
            "coaching %s to member %s: its replies are gone, nothing recorded",
            plan.kind.value,
            plan.responder_id,
        )
        return
    session.add(
        CoachingDelivery(
            guild_id=plan.guild_id,
            responder_id=plan.responder_id,
            kind=plan.kind.value,
            status=status,
            reply_message_ids=list(plan.reply_message_ids),
            dm_message_id=dm_message_id,
            sent_at=now,
        )
    )
    if status == "sent":
        if plan.first_contact:
            member = await consent.get_or_create(session, plan.guild_id, plan.responder_id)
            member.coaching_invited_at = member.coaching_invited_at or now
        if plan.kind is PlanKind.COACH:
            await _set_status(session, plan.reply_message_ids, CoachingStatus.SENT)
        elif plan.kind is PlanKind.DIGEST:
            await _set_status(session, plan.reply_message_ids, CoachingStatus.DIGESTED)
    elif status == "dms_closed":
        await consent.mark_dms_closed(session, plan.guild_id, plan.responder_id)
        await _set_status(session, plan.reply_message_ids, CoachingStatus.DMS_CLOSED)
    elif plan.kind in (PlanKind.COACH, PlanKind.DIGEST):
        await _set_status(session, plan.reply_message_ids, CoachingStatus.FAILED)
    log.info(
        "coaching %s to member %s in guild %s: %s (%d replies)",
        plan.kind.value,
        plan.responder_id,
        plan.guild_id,
        status,
        len(plan.reply_message_ids),
    )


async def set_coaching_choice(
    session: AsyncSession, guild_id: int, user_id: int, accepted: bool, now: datetime
) -> int:
    """The member answered the invitation or ran `/peercare coaching on|off` (audited by consent).

    On yes, their recent replies that waited for the answer are queued; returns how many.
    """
    await consent.set_coaching(
        session, guild_id, user_id, CoachingChoice.ON if accepted else CoachingChoice.OFF
    )
    waiting = list(
        await session.scalars(
            select(ScoredReply).where(
                ScoredReply.guild_id == guild_id,
                ScoredReply.responder_id == user_id,
                ScoredReply.coaching_status.in_(
                    (CoachingStatus.AWAITING_CONSENT.value, CoachingStatus.DMS_CLOSED.value)
                ),
            )
        )
    )
    queued = 0
    for row in waiting:
        if accepted and row.scored_at >= now - LATE_ACCEPT_WINDOW:
            row.coaching_status = CoachingStatus.QUEUED.value
            queued += 1
        else:
            row.coaching_status = CoachingStatus.NOT_WANTED.value
    if not accepted:
        await _set_status(
            session,
            [
                r.reply_message_id
                for r in await session.scalars(
                    select(ScoredReply).where(
                        ScoredReply.guild_id == guild_id,
                        ScoredReply.responder_id == user_id,
                        ScoredReply.coaching_status == CoachingStatus.QUEUED.value,
                    )
                )
            ],
            CoachingStatus.NOT_WANTED,
        )
    return queued


async def responders_with_queued_replies(session: AsyncSession) -> list[tuple[int, int]]:
    """(guild_id, responder_id) pairs with replies waiting for a note: the periodic flush walks these."""
    rows = await session.execute(
        select(ScoredReply.guild_id, ScoredReply.responder_id)
        .where(ScoredReply.coaching_status == CoachingStatus.QUEUED.value)
        .group_by(ScoredReply.guild_id, ScoredReply.responder_id)
    )
    return [(int(g), int(r)) for g, r in rows.all()]


async def delivery_counts(session: AsyncSession, guild_id: int) -> dict[str, int]:
    rows = await session.execute(
        select(CoachingDelivery.kind, func.count())
        .where(CoachingDelivery.guild_id == guild_id, CoachingDelivery.status == "sent")
        .group_by(CoachingDelivery.kind)
    )
    return {kind: int(count) for kind, count in rows.all()}
