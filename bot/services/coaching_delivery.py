"""Decide whether, when and how a responder hears about their replies: consent, rate limits, digests.

The cog asks for a plan, sends the DM, and records what happened here; each reply earns at most one note
(its ``coaching_status`` leaves ``pending``/``queued`` exactly once).

Delivery has two phases, as escalation alerts do. ``claim`` writes, in the same committed transaction as the
plan, a ``coaching_deliveries`` row with status ``sending`` (and its replies ``sending``) *before* the DM goes
out; ``record_delivery`` settles that row after the send. A row still ``sending`` later means the process died,
or the database stayed unavailable, between the send and the record: ``settle_unfinished`` decides what it was
from the responder's DM history (see its docstring). Coaching is not safety-critical, so when the history
cannot tell, a possibly missed note is preferred to a duplicate one.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import CoachingChoice, CoachingDelivery, GuildSettings, ScoredReply
from bot.services import consent, guild_settings, seeker_risk
from bot.services.coaching import (
    CoachingNote,
    ReplyForCoaching,
    author_may_be_in_danger,
    compose_digest,
    compose_note,
)
from bot.services.message_links import jump_url
from bot.services.reply_scoring import CoachingStatus, mechanism_levels
from bot.sharding import GuildOwnership

log = logging.getLogger(__name__)

# Replies waiting for consent longer than this are not coached after a late "yes": the moment has passed.
LATE_ACCEPT_WINDOW = timedelta(hours=24)
DAY = timedelta(hours=24)

# A reply's ``coaching_status`` and a delivery's ``status`` while its DM is (or may be) on its way: claimed
# before the send, settled after it. (``CoachingStatus`` lives with reply scoring; this value is coaching's.)
SENDING = "sending"
# A delivery left ``sending`` whose DM could not be found or ruled out: counted as sent, never re-sent.
UNCONFIRMED = "unconfirmed"
# A delivery left ``sending`` whose DM is verifiably not in the member's DMs: its replies were queued again.
NOT_SENT = "not_sent"
# Deliveries that count against the interval and the daily cap: what reached (or may have reached) the member.
_COUNTED_STATUSES = ("sent", SENDING, UNCONFIRMED)


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
    # The ``coaching_deliveries`` row claimed before the send (``claim``); None until then.
    delivery_id: int | None = None

    @property
    def sends_something(self) -> bool:
        return self.kind in (PlanKind.INVITE, PlanKind.COACH, PlanKind.DIGEST)


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


async def _set_status(session: AsyncSession, reply_ids: Sequence[int], status: CoachingStatus | str) -> None:
    if reply_ids:
        await session.execute(
            update(ScoredReply)
            .where(ScoredReply.reply_message_id.in_(reply_ids))
            .values(coaching_status=status.value if isinstance(status, CoachingStatus) else status)
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
    # Intake judges a reply's own risk before handing it here.
    if author_may_be_in_danger(await seeker_risk.recorded_tier(session, reply_message_id)):
        row.coaching_status = CoachingStatus.AUTHOR_AT_RISK.value
        return _nothing(guild_id, responder_id, "its author may be in danger")
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
                CoachingDelivery.status.in_(_COUNTED_STATUSES),
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


async def claim(session: AsyncSession, plan: DeliveryPlan, now: datetime) -> DeliveryPlan:
    """Phase one: write that this DM is going out, before it does (commit it before sending).

    Adds a ``sending`` delivery (the attempt time in ``sent_at``) and moves the plan's replies from
    ``queued`` to ``sending``, so neither the flush nor a restart plans them again while the DM is on its way.
    Returns the plan with its ``delivery_id``; a plan that sends nothing is returned as it is.
    """
    if not plan.sends_something:
        return plan
    delivery = CoachingDelivery(
        guild_id=plan.guild_id,
        responder_id=plan.responder_id,
        kind=plan.kind.value,
        status=SENDING,
        reply_message_ids=list(plan.reply_message_ids),
        sent_at=now,
    )
    session.add(delivery)
    if plan.kind in (PlanKind.COACH, PlanKind.DIGEST):
        await _set_status(session, plan.reply_message_ids, SENDING)
    await session.flush()
    return replace(plan, delivery_id=delivery.id)


async def plan_and_claim_new_reply(
    session: AsyncSession, reply_message_id: int, now: datetime
) -> DeliveryPlan:
    """``plan_for_new_reply`` and, when it sends something, ``claim`` — one transaction."""
    return await claim(session, await plan_for_new_reply(session, reply_message_id, now), now)


async def plan_and_claim_due(
    session: AsyncSession, guild_id: int, responder_id: int, now: datetime
) -> DeliveryPlan:
    """``plan_due`` and, when it sends something, ``claim`` — one transaction."""
    return await claim(session, await plan_due(session, guild_id, responder_id, now), now)


async def _mark_first_contact_made(
    session: AsyncSession, guild_id: int, responder_id: int, now: datetime
) -> None:
    member = await consent.get_or_create(session, guild_id, responder_id)
    member.coaching_invited_at = member.coaching_invited_at or now


async def record_delivery(
    session: AsyncSession,
    plan: DeliveryPlan,
    status: str,
    now: datetime,
    *,
    dm_message_id: int | None = None,
) -> None:
    """Phase two: record a sent (or refused) DM and move its replies on; DMs closed stops all further tries.

    Safe to run again (``Database.run`` may): a claimed delivery that is no longer ``sending`` is left alone.
    """
    delivery: CoachingDelivery | None = None
    if plan.delivery_id is not None:
        delivery = await session.get(CoachingDelivery, plan.delivery_id)
        if delivery is None or delivery.status != SENDING:
            # Erased with the member's data, or already settled (a re-run, or the flush got there first).
            return
    if plan.reply_message_ids and not await _any_reply_left(
        session, plan.responder_id, plan.reply_message_ids
    ):
        # The member erased their data (or deleted the replies) while the DM was on its way: keep nothing.
        if delivery is not None:
            await session.delete(delivery)
        log.info(
            "coaching %s to member %s: its replies are gone, nothing recorded",
            plan.kind.value,
            plan.responder_id,
        )
        return
    if delivery is None:
        delivery = CoachingDelivery(
            guild_id=plan.guild_id,
            responder_id=plan.responder_id,
            kind=plan.kind.value,
            reply_message_ids=list(plan.reply_message_ids),
        )
        session.add(delivery)
    delivery.status = status
    delivery.dm_message_id = dm_message_id
    delivery.sent_at = now
    if status == "sent":
        if plan.first_contact:
            await _mark_first_contact_made(session, plan.guild_id, plan.responder_id, now)
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


# -- recovery: deliveries left "sending", replies left "pending" ------------------------------------------


@dataclass(frozen=True, slots=True)
class UnfinishedDelivery:
    """A DM claimed but never recorded: the process died, or the database failed, around the send."""

    delivery_id: int
    guild_id: int
    responder_id: int
    kind: PlanKind
    claimed_at: datetime
    # Where to look for it: each of its replies' jump URL is in the note (a reply is in at most one DM).
    jump_urls: tuple[str, ...]


class Settled(str, enum.Enum):
    FOUND = "found"  # the DM is in the member's DMs: recorded as sent
    REQUEUED = "requeued"  # verifiably never sent: its replies wait for the next note
    UNCONFIRMED = "unconfirmed"  # could not tell: counted as sent, never re-sent
    GONE = "gone"  # erased or settled meanwhile: nothing to do


async def unfinished_deliveries(
    session: AsyncSession,
    owned: GuildOwnership = GuildOwnership.everything(),  # noqa: B008  (frozen, never mutated)
) -> list[UnfinishedDelivery]:
    """Every delivery still ``sending`` in the guilds ``owned``, with the jump URLs its DM carries (ids only).

    Only the owner settles one: another process could take a delivery that is being sent right now (its
    per-responder lock is in memory) for one lost in a crash.
    """
    rows = list(
        await session.scalars(
            select(CoachingDelivery)
            .where(CoachingDelivery.status == SENDING, owned.where(CoachingDelivery.guild_id))
            .order_by(CoachingDelivery.id)
        )
    )
    found: list[UnfinishedDelivery] = []
    for row in rows:
        reply_ids = [int(i) for i in row.reply_message_ids or []]
        replies = (
            list(
                await session.scalars(select(ScoredReply).where(ScoredReply.reply_message_id.in_(reply_ids)))
            )
            if reply_ids
            else []
        )
        found.append(
            UnfinishedDelivery(
                delivery_id=row.id,
                guild_id=row.guild_id,
                responder_id=row.responder_id,
                kind=PlanKind(row.kind),
                claimed_at=row.sent_at,
                jump_urls=tuple(jump_url(r.guild_id, r.channel_id, r.reply_message_id) for r in replies),
            )
        )
    return found


async def settle_unfinished(
    session: AsyncSession,
    delivery_id: int,
    now: datetime,
    *,
    dm_message_id: int | None,
    verified_absent: bool,
) -> Settled:
    """Decide what a delivery left ``sending`` was, from what the cog found in the member's DM history.

    - ``dm_message_id`` given (the note is in the DMs): recorded as sent, exactly as ``record_delivery`` would.
    - ``verified_absent`` (the history was read back past the claim and holds no such note) and a note, not
      an invitation: the DM never went out, so its replies are queued again and the flush sends them once.
    - Otherwise (the history could not be read, or not far enough): **counted as sent and never re-sent**.
      Coaching is not safety-critical: a member missing one note is better than a member getting the same
      note twice. Its replies get the status they would have had if it was sent; the delivery says
      ``unconfirmed``. An invitation is never re-sent either way (``coaching_invited_at`` was set in its plan).
    """
    delivery = await session.get(CoachingDelivery, delivery_id)
    if delivery is None or delivery.status != SENDING:
        return Settled.GONE
    kind = PlanKind(delivery.kind)
    reply_ids = [int(i) for i in delivery.reply_message_ids or []]
    if reply_ids and not await _any_reply_left(session, delivery.responder_id, reply_ids):
        await session.delete(delivery)
        return Settled.GONE
    if dm_message_id is None and verified_absent and kind in (PlanKind.COACH, PlanKind.DIGEST):
        delivery.status = NOT_SENT
        await _set_status(session, await _still_sending(session, reply_ids), CoachingStatus.QUEUED)
        outcome = Settled.REQUEUED
    else:
        delivery.status = "sent" if dm_message_id is not None else UNCONFIRMED
        delivery.dm_message_id = dm_message_id
        if kind in (PlanKind.COACH, PlanKind.DIGEST):
            await _maybe_first_contact(session, delivery.guild_id, delivery.responder_id, now)
            done = CoachingStatus.SENT if kind is PlanKind.COACH else CoachingStatus.DIGESTED
            await _set_status(session, await _still_sending(session, reply_ids), done)
        outcome = Settled.FOUND if dm_message_id is not None else Settled.UNCONFIRMED
    log.info(
        "coaching %s %s to member %s in guild %s, left unfinished: %s (%d replies)",
        kind.value,
        delivery_id,
        delivery.responder_id,
        delivery.guild_id,
        outcome.value,
        len(reply_ids),
    )
    return outcome


async def _still_sending(session: AsyncSession, reply_ids: Sequence[int]) -> list[int]:
    if not reply_ids:
        return []
    return list(
        await session.scalars(
            select(ScoredReply.reply_message_id).where(
                ScoredReply.reply_message_id.in_(reply_ids), ScoredReply.coaching_status == SENDING
            )
        )
    )


async def _maybe_first_contact(
    session: AsyncSession, guild_id: int, responder_id: int, now: datetime
) -> None:
    """A note (probably) reached a member PeerCare had never written to: it was the first-contact note."""
    member = await consent.find(session, guild_id, responder_id)
    if member is None or (member.coaching is CoachingChoice.UNSET and member.coaching_invited_at is None):
        await _mark_first_contact_made(session, guild_id, responder_id, now)


async def replies_left_pending(
    session: AsyncSession,
    now: datetime,
    owned: GuildOwnership = GuildOwnership.everything(),  # noqa: B008  (frozen, never mutated)
) -> list[tuple[int, int, int]]:
    """(guild_id, responder_id, reply_message_id) of recent replies coaching never looked at, in ``owned`` guilds.

    A reply stays ``pending`` when planning it failed (the database stayed locked past every retry) or the
    process died before its event was handled; the periodic flush plans them. Older than a day, the moment
    has passed (as for a late "yes" to the invitation), so they are left alone. With several processes, one
    may be pending only because its own process is still planning it: the other processes leave it alone.
    """
    rows = await session.execute(
        select(ScoredReply.guild_id, ScoredReply.responder_id, ScoredReply.reply_message_id)
        .where(
            ScoredReply.coaching_status == CoachingStatus.PENDING.value,
            ScoredReply.scored_at >= now - LATE_ACCEPT_WINDOW,
            owned.where(ScoredReply.guild_id),
        )
        .order_by(ScoredReply.scored_at, ScoredReply.id)
    )
    return [(int(g), int(r), int(m)) for g, r, m in rows.all()]


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


async def responders_with_queued_replies(
    session: AsyncSession,
    owned: GuildOwnership = GuildOwnership.everything(),  # noqa: B008  (frozen, never mutated)
) -> list[tuple[int, int]]:
    """(guild_id, responder_id) pairs with replies waiting for a note, in ``owned`` guilds: the flush walks these."""
    rows = await session.execute(
        select(ScoredReply.guild_id, ScoredReply.responder_id)
        .where(ScoredReply.coaching_status == CoachingStatus.QUEUED.value, owned.where(ScoredReply.guild_id))
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
