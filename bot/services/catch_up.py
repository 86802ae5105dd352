"""Start-up catch-up: which support-channel messages posted while PeerCare was offline are read from history.

Discord does not replay gateway events to a new session, so a post made while the bot was down (crash,
deploy, outage) is only found by reading the channel's history. What is read, per support location (an
opted-in channel or one of its active threads):

- only messages newer than the newest message the inbox recorded there before this connection (less a
  minute: messages are recorded concurrently, so one posted just before it may have been lost in a crash),
  the channel's opt-in, and the guild's last erasure of a member's data (forget-me or a member leaving:
  their old messages must not come back through history);
- only messages from the last ``CATCH_UP_LOOKBACK`` (24 h, never more than the inbox keeps its rows: with
  a retention of 0 days the inbox cannot tell what was seen, so there is no catch-up);
- at most ``CATCH_UP_MAX_MESSAGES`` per location: the newest ones; the older ones are left (with a warning).

Ids and times only: message text never passes through here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import AuditLogEntry, SupportChannel
from bot.services import message_inbox
from bot.services.snowflakes import snowflake_time, time_snowflake

log = logging.getLogger(__name__)

# Long enough for an overnight outage; short enough that a note about a day-old reply is still worth having.
CATCH_UP_LOOKBACK = timedelta(hours=24)
# Two history pages per location; bounds the start-up work however long the bot was away.
CATCH_UP_MAX_MESSAGES = 200
# Messages are recorded concurrently (and retried while the database is locked): one posted shortly before
# the newest recorded one may still have been on its way when the process died. Known ones are skipped.
SEEN_MARGIN = timedelta(minutes=1)
# Written by privacy.delete_member_data (forget-me, a member leaving): their inbox rows are gone with it.
MEMBER_DATA_DELETED = "privacy.member_data_deleted"


@dataclass(frozen=True, slots=True)
class OptedInChannel:
    channel_id: int
    opted_in_at: datetime


@dataclass(frozen=True, slots=True)
class CatchUpRange:
    """Which messages of one location to read: ids above ``after_id``, but none at or below ``oldest_id``."""

    after_id: int  # messages above this one may be unknown to the inbox (known ones are skipped)
    oldest_id: int  # the look-back window: older messages are never caught up


@dataclass(frozen=True, slots=True)
class Chosen:
    """What to do with the messages one history read returned."""

    take: tuple[int, ...]  # oldest first: processed like live messages
    too_old: int  # unknown to the inbox but older than the look-back window (left)
    over_cap: bool  # more than the cap are newer than the window: the oldest of them were left


def lookback_for(retention_days: int) -> timedelta:
    """The look-back window: never longer than the inbox keeps finished rows (it is what tells "seen")."""
    return min(CATCH_UP_LOOKBACK, timedelta(days=max(retention_days, 0)))


def catch_up_range(
    *,
    newest_seen_id: int | None,
    opted_in_at: datetime,
    erased_at: datetime | None,
    connected_at: datetime,
    lookback: timedelta,
) -> CatchUpRange:
    """Where one location's unread messages start (``connected_at``: when this gateway session began)."""
    # high=True: a message from the very millisecond of the opt-in or erasure was seen live, if at all.
    known = [time_snowflake(opted_in_at, high=True)]
    if erased_at is not None:
        known.append(time_snowflake(erased_at, high=True))
    if newest_seen_id is not None:
        known.append(time_snowflake(snowflake_time(newest_seen_id) - SEEN_MARGIN, high=True))
    return CatchUpRange(after_id=max(known), oldest_id=time_snowflake(connected_at - lookback, high=True))


def choose(fetched_ids: Sequence[int], window: CatchUpRange, cap: int = CATCH_UP_MAX_MESSAGES) -> Chosen:
    """Pick the messages to process from what history returned (ideally up to ``cap + 1``, newest first).

    The newest ``cap`` win: with a long outage the recent posts are the ones someone can still act on.
    """
    unseen = sorted(i for i in set(fetched_ids) if i > window.after_id)
    in_window = [i for i in unseen if i > window.oldest_id]
    return Chosen(
        take=tuple(in_window[-cap:] if cap > 0 else ()),
        too_old=len(unseen) - len(in_window),
        over_cap=len(in_window) > cap,
    )


async def opted_in_channels(session: AsyncSession, guild_id: int) -> list[OptedInChannel]:
    rows = await session.execute(
        select(SupportChannel.channel_id, SupportChannel.added_at)
        .where(SupportChannel.guild_id == guild_id)
        .order_by(SupportChannel.added_at, SupportChannel.channel_id)
    )
    return [OptedInChannel(channel_id, added_at) for channel_id, added_at in rows.all()]


async def last_member_erasure(session: AsyncSession, guild_id: int) -> datetime | None:
    """When a member's data was last erased in this guild (or everywhere), if ever."""
    return await session.scalar(
        select(func.max(AuditLogEntry.created_at)).where(
            AuditLogEntry.action == MEMBER_DATA_DELETED,
            or_(AuditLogEntry.guild_id == guild_id, AuditLogEntry.guild_id.is_(None)),
        )
    )


async def range_for(
    session: AsyncSession,
    location_id: int,
    *,
    opted_in_at: datetime,
    erased_at: datetime | None,
    connected_at: datetime,
    lookback: timedelta,
) -> CatchUpRange:
    """The range for one location, anchored on what the inbox recorded there before this connection."""
    newest = await message_inbox.newest_message_id(session, location_id, received_before=connected_at)
    return catch_up_range(
        newest_seen_id=newest,
        opted_in_at=opted_in_at,
        erased_at=erased_at,
        connected_at=connected_at,
        lookback=lookback,
    )
