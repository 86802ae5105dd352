"""Retention: message text disappears when its time is up, and a departed guild's data after its grace period.

Text lives only in ``scored_replies.reply_text``, ``escalations.excerpt`` and ``checkins.answer_text``; each
row carries ``text_expires_at``. The job also enforces the current ``MESSAGE_RETENTION_DAYS`` on rows written
under a longer setting, so lowering the setting takes effect at the next run.

With several bot processes (sharding), each purges only the guilds it owns (``GuildOwnership``, the guilds its
shards receive), so every guild's retention runs in exactly one process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Checkin, Escalation, GuildSettings, ScoredReply
from bot.services import audit, guild_settings, privacy
from bot.sharding import GuildOwnership

log = logging.getLogger(__name__)

# (model, text column, the column that says when the text was written)
_TEXT_COLUMNS = (
    (ScoredReply, "reply_text", "scored_at"),
    (Escalation, "excerpt", "created_at"),
    (Checkin, "answer_text", "answered_at"),
)


@dataclass(frozen=True, slots=True)
class PurgeResult:
    texts_removed: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.texts_removed.values())


async def purge_expired_text(
    session: AsyncSession,
    now: datetime,
    retention_days: int,
    owned: GuildOwnership = GuildOwnership.everything(),  # noqa: B008  (frozen, never mutated)
) -> PurgeResult:
    """Null every stored message text whose expiry passed (or that is older than the retention setting).

    Only in the guilds this process ``owned`` (all of them without sharding).
    """
    oldest_allowed = now - timedelta(days=max(retention_days, 0))
    removed: dict[str, int] = {}
    for model, text_column, written_column in _TEXT_COLUMNS:
        text = getattr(model, text_column)
        expired = or_(
            model.text_expires_at <= now,  # type: ignore[attr-defined]
            getattr(model, written_column) <= oldest_allowed,
            model.text_expires_at.is_(None),  # type: ignore[attr-defined]  # text without an expiry: never kept
        )
        result = await session.execute(
            update(model)
            .where(text.is_not(None), expired, owned.where(model.guild_id))  # type: ignore[attr-defined]
            .values({text_column: None, "text_expires_at": None})
        )
        if result.rowcount:
            removed[model.__tablename__] = result.rowcount
    if removed:
        audit.record(session, "retention.text_deleted", guild_id=None, counts=removed)
        log.info("retention: removed stored text from %d rows", sum(removed.values()))
    return PurgeResult(removed)


async def mark_guild_left(session: AsyncSession, guild_id: int, now: datetime) -> None:
    """PeerCare was removed from a guild: its data goes after the grace period unless it comes back."""
    settings = await guild_settings.get_or_create(session, guild_id)
    if settings.left_at is None:
        settings.left_at = now
        audit.record(session, "guild.left", guild_id=guild_id)


async def mark_guild_returned(session: AsyncSession, guild_id: int) -> None:
    settings = await session.get(GuildSettings, guild_id)
    if settings is not None and settings.left_at is not None:
        settings.left_at = None
        audit.record(session, "guild.returned", guild_id=guild_id)


async def purge_departed_guilds(
    session: AsyncSession,
    now: datetime,
    grace_days: int,
    owned: GuildOwnership = GuildOwnership.everything(),  # noqa: B008  (frozen, never mutated)
) -> list[privacy.DeletionReport]:
    """Delete every owned guild whose grace period after leaving has passed. Returns one report per guild."""
    cutoff = now - timedelta(days=grace_days)
    guild_ids = list(
        await session.scalars(
            select(GuildSettings.guild_id).where(
                GuildSettings.left_at.is_not(None),
                GuildSettings.left_at <= cutoff,
                owned.where(GuildSettings.guild_id),
            )
        )
    )
    return [await privacy.delete_guild_data(session, guild_id) for guild_id in guild_ids]
