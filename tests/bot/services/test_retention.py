"""Retention service: text goes when it expires; departed guilds go after their grace period."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from bot.db.models import Checkin, Escalation, GuildSettings, ScoredReply
from bot.db.session import Database
from bot.services import retention

# A faster `database` fixture (a copy of one migrated file) for these modules.
from tests.bot.services.safety_fixtures import migrated_template, safety_database  # noqa: F401
from tests.bot.services.test_privacy import GUILD, MEMBER, NOW, seed_member


async def _texts(database: Database) -> tuple[str | None, str | None, str | None]:
    async with database.session() as session:
        return (
            await session.scalar(select(ScoredReply.reply_text)),
            await session.scalar(select(Escalation.excerpt)),
            await session.scalar(select(Checkin.answer_text)),
        )


async def _set_expiry(database: Database, when: datetime) -> None:
    async with database.session() as session:
        for model in (ScoredReply, Escalation, Checkin):
            for row in await session.scalars(select(model)):
                row.text_expires_at = when


async def test_expired_text_is_removed_from_every_text_column(database: Database) -> None:
    await seed_member(database, MEMBER)
    await _set_expiry(database, NOW - timedelta(seconds=1))
    async with database.session() as session:
        result = await retention.purge_expired_text(session, NOW, retention_days=7)
    assert await _texts(database) == (None, None, None)
    assert result.total == 3


async def test_text_within_retention_is_kept(database: Database) -> None:
    await seed_member(database, MEMBER)
    await _set_expiry(database, NOW + timedelta(days=1))
    async with database.session() as session:
        await retention.purge_expired_text(session, NOW, retention_days=7)
    assert await _texts(database) == ("made-up reply", "made-up excerpt", "made-up answer")


async def test_lowered_retention_setting_applies_to_older_text(database: Database) -> None:
    await seed_member(database, MEMBER)
    await _set_expiry(database, NOW + timedelta(days=30))
    async with database.session() as session:
        reply = await session.scalar(select(ScoredReply))
        reply.scored_at = NOW - timedelta(days=3)
    async with database.session() as session:
        await retention.purge_expired_text(session, NOW, retention_days=2)
    reply_text, *_ = await _texts(database)
    assert reply_text is None


async def test_expired_text_purge_keeps_the_scores(database: Database) -> None:
    await seed_member(database, MEMBER)
    await _set_expiry(database, NOW - timedelta(days=1))
    async with database.session() as session:
        await retention.purge_expired_text(session, NOW, retention_days=7)
    async with database.session() as session:
        reply = await session.scalar(select(ScoredReply))
    assert (reply.er_level, reply.ex_level) == (1, 2)


async def test_departed_guild_is_deleted_only_after_the_grace_period(database: Database) -> None:
    await seed_member(database, MEMBER)
    async with database.session() as session:
        await retention.mark_guild_left(session, GUILD, NOW)
    async with database.session() as session:
        assert await retention.purge_departed_guilds(session, NOW + timedelta(days=13), grace_days=14) == []
    async with database.session() as session:
        reports = await retention.purge_departed_guilds(session, NOW + timedelta(days=14), grace_days=14)
    assert len(reports) == 1
    async with database.session() as session:
        assert await session.get(GuildSettings, GUILD) is None


async def test_returning_guild_keeps_its_data(database: Database) -> None:
    await seed_member(database, MEMBER)
    async with database.session() as session:
        await retention.mark_guild_left(session, GUILD, NOW)
    async with database.session() as session:
        await retention.mark_guild_returned(session, GUILD)
    async with database.session() as session:
        assert await retention.purge_departed_guilds(session, NOW + timedelta(days=60), grace_days=14) == []
        assert await session.get(GuildSettings, GUILD) is not None
