"""With several processes, each one's periodic jobs touch only the guilds its shards own (bot.sharding).

Two guilds, one on each shard of two: the process owning shard 0 purges text, deletes a departed guild and
restores check-in schedules for its guild only; the other process does the rest; together, each exactly once.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bot.db.models import Checkin, Escalation, GuildSettings, ScoredReply
from bot.db.session import Database
from bot.services import checkins, retention
from bot.sharding import GuildOwnership, shard_of

# A faster `database` fixture (a copy of one migrated file) for these modules.
from tests.bot.services.safety_fixtures import migrated_template, safety_database  # noqa: F401
from tests.bot.services.test_privacy import MEMBER, NOW, seed_member

SHARD_0_GUILD, SHARD_1_GUILD = 2 << 22, 1 << 22
FIRST, SECOND = GuildOwnership(2, frozenset({0})), GuildOwnership(2, frozenset({1}))


async def _seed_both(database: Database) -> None:
    assert (shard_of(SHARD_0_GUILD, 2), shard_of(SHARD_1_GUILD, 2)) == (0, 1)
    await seed_member(database, MEMBER, SHARD_0_GUILD, message_base=1000)
    await seed_member(database, MEMBER, SHARD_1_GUILD, message_base=2000)


async def _guilds_with_text(database: Database) -> set[int]:
    async with database.session() as session:
        found: set[int] = set()
        for model, column in ((ScoredReply, ScoredReply.reply_text), (Escalation, Escalation.excerpt)):
            found |= set(await session.scalars(select(model.guild_id).where(column.is_not(None))))
        found |= set(await session.scalars(select(Checkin.guild_id).where(Checkin.answer_text.is_not(None))))
        return found


async def test_text_retention_runs_per_owner_and_once_across_the_fleet(database: Database) -> None:
    await _seed_both(database)
    later = NOW + timedelta(days=30)
    async with database.session() as session:
        first = await retention.purge_expired_text(session, later, 7, FIRST)
    assert first.total == 3
    assert await _guilds_with_text(database) == {SHARD_1_GUILD}
    async with database.session() as session:
        second = await retention.purge_expired_text(session, later, 7, SECOND)
        again = await retention.purge_expired_text(session, later, 7, FIRST)
    assert (second.total, again.total) == (3, 0)
    assert await _guilds_with_text(database) == set()


async def test_a_departed_guild_is_deleted_by_its_owner_only(database: Database) -> None:
    await _seed_both(database)
    async with database.session() as session:
        for guild_id in (SHARD_0_GUILD, SHARD_1_GUILD):
            await retention.mark_guild_left(session, guild_id, NOW)
    after_grace = NOW + timedelta(days=15)
    async with database.session() as session:
        reports = await retention.purge_departed_guilds(session, after_grace, 14, SECOND)
    assert len(reports) == 1
    async with database.session() as session:
        assert set(await session.scalars(select(GuildSettings.guild_id))) == {SHARD_0_GUILD}
        assert await retention.purge_departed_guilds(session, after_grace, 14, SECOND) == []
        assert len(await retention.purge_departed_guilds(session, after_grace, 14, FIRST)) == 1
    async with database.session() as session:
        assert list(await session.scalars(select(GuildSettings.guild_id))) == []


async def test_each_process_restores_only_its_guilds_check_ins(database: Database) -> None:
    await _seed_both(database)
    async with database.session() as session:
        first = await checkins.active_schedules(session, FIRST)
        second = await checkins.active_schedules(session, SECOND)
        everything = await checkins.active_schedules(session)
    assert [s.guild_id for s in first] == [SHARD_0_GUILD]
    assert [s.guild_id for s in second] == [SHARD_1_GUILD]
    assert sorted(s.id for s in everything) == sorted(s.id for s in first + second)
