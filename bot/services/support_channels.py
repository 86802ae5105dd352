"""Opt-in support channels: the only places PeerCare reads (a thread counts through its parent channel)."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import SupportChannel
from bot.services import audit
from bot.services.errors import UserFacingError

log = logging.getLogger(__name__)

# Discord allows 500 channels per guild; a generous cap keeps `list` readable and stops runaway scripts.
MAX_SUPPORT_CHANNELS = 100


async def add(session: AsyncSession, guild_id: int, channel_id: int, actor_id: int) -> bool:
    """Opt a channel in. Returns False when it already was (nothing changes, nothing is audited)."""
    existing = await session.get(SupportChannel, channel_id)
    if existing is not None:
        return False
    if len(await list_channel_ids(session, guild_id)) >= MAX_SUPPORT_CHANNELS:
        raise UserFacingError(
            f"This server already has {MAX_SUPPORT_CHANNELS} support channels; remove one before adding another."
        )
    session.add(SupportChannel(channel_id=channel_id, guild_id=guild_id, added_by=actor_id))
    audit.record(
        session,
        "support_channel.added",
        guild_id=guild_id,
        actor_id=actor_id,
        subject_type="channel",
        subject_id=channel_id,
    )
    return True


async def remove(session: AsyncSession, guild_id: int, channel_id: int, actor_id: int) -> bool:
    """Opt a channel out. Returns False when it was not a support channel of this guild."""
    existing = await session.get(SupportChannel, channel_id)
    if existing is None or existing.guild_id != guild_id:
        return False
    await session.delete(existing)
    audit.record(
        session,
        "support_channel.removed",
        guild_id=guild_id,
        actor_id=actor_id,
        subject_type="channel",
        subject_id=channel_id,
    )
    return True


async def list_channel_ids(session: AsyncSession, guild_id: int) -> list[int]:
    rows = await session.scalars(
        select(SupportChannel.channel_id)
        .where(SupportChannel.guild_id == guild_id)
        .order_by(SupportChannel.added_at, SupportChannel.channel_id)
    )
    return list(rows)


async def is_support_channel(session: AsyncSession, guild_id: int, channel_id: int) -> bool:
    """True for an opted-in channel of this guild. Callers pass a thread's parent id for threads."""
    existing = await session.get(SupportChannel, channel_id)
    return existing is not None and existing.guild_id == guild_id
