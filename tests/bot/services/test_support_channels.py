"""Opt-in support channels on a real database."""

from __future__ import annotations

from sqlalchemy import select

from bot.db.models import AuditLogEntry
from bot.db.session import Database
from bot.services import support_channels

GUILD, OTHER_GUILD, CHANNEL, MOD = 10, 20, 100, 7


async def test_added_channel_is_a_support_channel(database: Database) -> None:
    async with database.session() as session:
        assert await support_channels.add(session, GUILD, CHANNEL, MOD)
    async with database.session() as session:
        assert await support_channels.is_support_channel(session, GUILD, CHANNEL)
        assert await support_channels.list_channel_ids(session, GUILD) == [CHANNEL]


async def test_adding_a_channel_twice_reports_it_was_already_added(database: Database) -> None:
    async with database.session() as session:
        await support_channels.add(session, GUILD, CHANNEL, MOD)
    async with database.session() as session:
        assert not await support_channels.add(session, GUILD, CHANNEL, MOD)
        assert await support_channels.list_channel_ids(session, GUILD) == [CHANNEL]


async def test_removed_channel_is_no_longer_a_support_channel(database: Database) -> None:
    async with database.session() as session:
        await support_channels.add(session, GUILD, CHANNEL, MOD)
    async with database.session() as session:
        assert await support_channels.remove(session, GUILD, CHANNEL, MOD)
    async with database.session() as session:
        assert not await support_channels.is_support_channel(session, GUILD, CHANNEL)


async def test_unknown_channel_is_not_a_support_channel(database: Database) -> None:
    async with database.session() as session:
        assert not await support_channels.is_support_channel(session, GUILD, CHANNEL)
        assert not await support_channels.remove(session, GUILD, CHANNEL, MOD)


async def test_another_guild_cannot_see_or_remove_the_channel(database: Database) -> None:
    async with database.session() as session:
        await support_channels.add(session, GUILD, CHANNEL, MOD)
    async with database.session() as session:
        assert not await support_channels.is_support_channel(session, OTHER_GUILD, CHANNEL)
        assert not await support_channels.remove(session, OTHER_GUILD, CHANNEL, MOD)
        assert await support_channels.is_support_channel(session, GUILD, CHANNEL)


async def test_adding_and_removing_are_audited_with_the_moderator(database: Database) -> None:
    async with database.session() as session:
        await support_channels.add(session, GUILD, CHANNEL, MOD)
    async with database.session() as session:
        await support_channels.remove(session, GUILD, CHANNEL, MOD)
    async with database.session() as session:
        entries = list(await session.scalars(select(AuditLogEntry).order_by(AuditLogEntry.id)))
    assert [(e.action, e.actor_id, e.subject_id) for e in entries] == [
        ("support_channel.added", MOD, CHANNEL),
        ("support_channel.removed", MOD, CHANNEL),
    ]
