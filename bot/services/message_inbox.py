"""The message inbox: every support-channel message gets one row when received and exactly one outcome.

Ids only, never text: a message still pending after a crash is fetched from Discord again and processed
anew. A row moves from ``pending`` to ``scored`` or ``skipped`` (with a machine-readable reason) once; later
writes to a finished row change nothing, so a replayed event, an edit or a recovery sweep never records a
second outcome.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import InboxMessage, InboxOutcome, utcnow
from bot.sharding import GuildOwnership

log = logging.getLogger(__name__)

# A message whose processing failed (or was cut off by a crash) this many times ends skipped / "failed".
MAX_ATTEMPTS = 3
# Pending messages the recovery sweep reads per page (it pages through a larger backlog in one sweep).
# Here rather than in the cog because discord.py re-executes an extension's module on every load.
RECOVERY_PAGE_SIZE = 200


class MessageKind(str, enum.Enum):
    POST = "post"  # a seeker post: risk-scored
    REPLY = "reply"  # a reply to a seeker post: empathy-scored with its parent
    UNKNOWN = "unknown"  # not yet known (the parent is looked up after the message is recorded)


class SkipReason(str, enum.Enum):
    """Why a received message was not scored (stored in ``message_inbox.skip_reason``)."""

    EMPTY = "empty"  # no words (only spaces, zero-width characters...)
    ATTACHMENT_ONLY = "attachment_only"  # files, embeds or stickers without words
    PARENT_UNREADABLE = "parent_unreadable"  # a reply whose parent is gone or outside the support channels
    PARENT_IS_BOT = "parent_is_bot"  # a reply to a bot's message: there is no seeker
    PARENT_EMPTY = "parent_empty"  # a reply to a message without words
    DELETED = "deleted"  # deleted on Discord before it was scored
    INPUT_REJECTED = "input_rejected"  # the models refused the text (nothing left after normalisation)
    SHED = "shed"  # dropped under load (coaching scores only; risk is never shed)
    NO_ACCESS = "no_access"  # could not be fetched again after a restart (permissions)
    NOT_SUPPORT_CHANNEL = "not_support_channel"  # the channel was opted out before it could be processed
    FAILED = "failed"  # kept failing: given up after MAX_ATTEMPTS


@dataclass(frozen=True, slots=True)
class Received:
    """What ``record_received`` found: a new row (process it) or an existing one (a redelivered event)."""

    is_new: bool
    outcome: InboxOutcome
    attempts: int

    @classmethod
    def redelivered(cls, row: InboxMessage) -> Received:
        """The message's row was already there: the event came again, and the row says how far it got."""
        return cls(False, row.outcome, row.attempts)


@dataclass(frozen=True, slots=True)
class PendingMessage:
    """A message received but without an outcome: where to fetch it from again."""

    message_id: int
    guild_id: int
    channel_id: int
    author_id: int
    attempts: int
    received_at: datetime


async def record_received(
    session: AsyncSession,
    *,
    message_id: int,
    guild_id: int,
    channel_id: int,
    author_id: int,
    now: datetime | None = None,
) -> Received:
    """Record a message as received (its first attempt starts now). A second call for the same id adds nothing."""
    existing = await session.get(InboxMessage, message_id)
    if existing is not None:
        return Received.redelivered(existing)
    try:
        async with session.begin_nested():
            session.add(
                InboxMessage(
                    message_id=message_id,
                    guild_id=guild_id,
                    channel_id=channel_id,
                    author_id=author_id,
                    kind=MessageKind.UNKNOWN.value,
                    received_at=now or utcnow(),
                    outcome=InboxOutcome.PENDING,
                    attempts=1,
                )
            )
    except IntegrityError:
        # The same event delivered twice at once: the other writer owns the row.
        existing = await session.get(InboxMessage, message_id, populate_existing=True)
        assert existing is not None
        return Received.redelivered(existing)
    return Received(True, InboxOutcome.PENDING, 1)


async def start_attempt(session: AsyncSession, message_id: int) -> int | None:
    """Count one more attempt at a pending message. Returns the attempt number, or None if it is finished."""
    result = await session.execute(
        update(InboxMessage)
        .where(InboxMessage.message_id == message_id, InboxMessage.outcome == InboxOutcome.PENDING)
        .values(attempts=InboxMessage.attempts + 1)
    )
    if not result.rowcount:
        return None
    return await session.scalar(select(InboxMessage.attempts).where(InboxMessage.message_id == message_id))


async def still_pending(session: AsyncSession, message_id: int) -> bool:
    """The message still owes an outcome (not forgotten, deleted or finished meanwhile).

    A write, not a read, on purpose: called first in the transaction that stores a score, it takes the row
    lock (PostgreSQL) or the write lock (SQLite) there and then, so a forget-me that deletes this row either
    finishes before (and this answers False) or waits until the score is stored (and then deletes it).
    """
    result = await session.execute(
        update(InboxMessage)
        .where(InboxMessage.message_id == message_id, InboxMessage.outcome == InboxOutcome.PENDING)
        .values(attempts=InboxMessage.attempts)
    )
    return bool(result.rowcount)


async def _finish(
    session: AsyncSession,
    message_id: int,
    outcome: InboxOutcome,
    reason: SkipReason | None,
    kind: MessageKind | None,
    now: datetime | None,
) -> bool:
    values: dict[str, object] = {
        "outcome": outcome,
        "skip_reason": reason.value if reason is not None else None,
        "finished_at": now or utcnow(),
    }
    if kind is not None:
        values["kind"] = kind.value
    result = await session.execute(
        update(InboxMessage)
        .where(InboxMessage.message_id == message_id, InboxMessage.outcome == InboxOutcome.PENDING)
        .values(values)
    )
    return bool(result.rowcount)


async def mark_scored(
    session: AsyncSession, message_id: int, *, kind: MessageKind | None = None, now: datetime | None = None
) -> bool:
    """Record the outcome "scored". Returns False if the message already had an outcome (or no row)."""
    return await _finish(session, message_id, InboxOutcome.SCORED, None, kind, now)


async def mark_skipped(
    session: AsyncSession,
    message_id: int,
    reason: SkipReason,
    *,
    kind: MessageKind | None = None,
    now: datetime | None = None,
) -> bool:
    """Record the outcome "skipped" with its reason. Returns False if the message already had an outcome."""
    return await _finish(session, message_id, InboxOutcome.SKIPPED, reason, kind, now)


async def mark_deleted(session: AsyncSession, message_ids: list[int], *, now: datetime | None = None) -> int:
    """Messages were deleted on Discord: those still pending end skipped / "deleted". Returns how many."""
    finished = 0
    for message_id in message_ids:
        finished += await mark_skipped(session, message_id, SkipReason.DELETED, now=now)
    return finished


async def record_failure(
    session: AsyncSession, message_id: int, *, max_attempts: int = MAX_ATTEMPTS, now: datetime | None = None
) -> bool:
    """An attempt failed. Below ``max_attempts`` the message stays pending (a sweep retries it); at the
    limit it ends skipped / "failed". Returns True when it was given up."""
    attempts = await session.scalar(
        select(InboxMessage.attempts).where(
            InboxMessage.message_id == message_id, InboxMessage.outcome == InboxOutcome.PENDING
        )
    )
    if attempts is None or attempts < max_attempts:
        return False
    given_up = await mark_skipped(session, message_id, SkipReason.FAILED, now=now)
    if given_up:
        log.warning("message %s given up after %d failed attempts", message_id, attempts)
    return given_up


async def pending(
    session: AsyncSession,
    *,
    older_than: datetime,
    limit: int = 200,
    guild_id: int | None = None,
    after: PendingMessage | None = None,
    owned: GuildOwnership = GuildOwnership.everything(),  # noqa: B008  (frozen, never mutated)
) -> list[PendingMessage]:
    """Messages still without an outcome that were received before ``older_than``, oldest first.

    ``after``: the last message of the previous page (pages never repeat a message, even one still pending).
    ``owned``: only in the guilds this process's shards own (another process recovers the rest).
    """
    statement = (
        select(InboxMessage)
        .where(
            InboxMessage.outcome == InboxOutcome.PENDING,
            InboxMessage.received_at < older_than,
            owned.where(InboxMessage.guild_id),
        )
        .order_by(InboxMessage.received_at, InboxMessage.message_id)
        .limit(limit)
    )
    if guild_id is not None:
        statement = statement.where(InboxMessage.guild_id == guild_id)
    if after is not None:
        statement = statement.where(
            tuple_(InboxMessage.received_at, InboxMessage.message_id)
            > tuple_(after.received_at, after.message_id)
        )
    return [
        PendingMessage(
            message_id=row.message_id,
            guild_id=row.guild_id,
            channel_id=row.channel_id,
            author_id=row.author_id,
            attempts=row.attempts,
            received_at=row.received_at,
        )
        for row in await session.scalars(statement)
    ]


async def newest_message_id(
    session: AsyncSession, channel_id: int, *, received_before: datetime | None = None
) -> int | None:
    """The newest message recorded in one channel or thread (received before the cut-off), if any."""
    statement = select(func.max(InboxMessage.message_id)).where(InboxMessage.channel_id == channel_id)
    if received_before is not None:
        statement = statement.where(InboxMessage.received_at < received_before)
    return await session.scalar(statement)


async def outcome_of(session: AsyncSession, message_id: int) -> tuple[InboxOutcome, str | None] | None:
    """(outcome, skip reason) of one message, or None if it was never recorded."""
    row = (
        await session.execute(
            select(InboxMessage.outcome, InboxMessage.skip_reason).where(
                InboxMessage.message_id == message_id
            )
        )
    ).one_or_none()
    return None if row is None else (row.outcome, row.skip_reason)


async def outcome_counts(session: AsyncSession, guild_id: int | None = None) -> dict[str, int]:
    """How many messages are pending, scored and skipped (every outcome present, zero included)."""
    statement = select(InboxMessage.outcome, func.count()).group_by(InboxMessage.outcome)
    if guild_id is not None:
        statement = statement.where(InboxMessage.guild_id == guild_id)
    counts = {outcome.value: 0 for outcome in InboxOutcome}
    for outcome, count in (await session.execute(statement)).all():
        counts[InboxOutcome(outcome).value] = int(count)
    return counts


async def skip_reason_counts(session: AsyncSession, guild_id: int | None = None) -> dict[str, int]:
    """How many skipped messages per reason (only reasons that occurred)."""
    statement = (
        select(InboxMessage.skip_reason, func.count())
        .where(InboxMessage.outcome == InboxOutcome.SKIPPED)
        .group_by(InboxMessage.skip_reason)
    )
    if guild_id is not None:
        statement = statement.where(InboxMessage.guild_id == guild_id)
    return {str(reason): int(count) for reason, count in (await session.execute(statement)).all()}


# -- privacy and retention (a departed guild's rows go with privacy.delete_guild_data) -------------------


async def delete_member_rows(session: AsyncSession, user_id: int, guild_id: int | None = None) -> int:
    """Forget-me / member left: drop the rows of the member's messages (in one guild, or everywhere)."""
    statement = delete(InboxMessage).where(InboxMessage.author_id == user_id)
    if guild_id is not None:
        statement = statement.where(InboxMessage.guild_id == guild_id)
    return (await session.execute(statement)).rowcount or 0


async def purge_finished(session: AsyncSession, finished_before: datetime) -> int:
    """Retention: drop finished rows older than the cut-off (pending rows stay: they still owe an outcome)."""
    result = await session.execute(
        delete(InboxMessage).where(
            InboxMessage.outcome != InboxOutcome.PENDING, InboxMessage.finished_at < finished_before
        )
    )
    removed = result.rowcount or 0
    if removed:
        log.info("retention: removed %d finished message inbox rows", removed)
    return removed
