"""Two event handlers meeting a new guild or member at the same moment share one settings row."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from bot.db.models import GuildSettings, MemberConsent
from bot.db.session import Database
from bot.services import consent, guild_settings


async def test_concurrent_handlers_create_one_guild_settings_row(database: Database) -> None:
    async def handler(hold_s: float) -> int:
        async with database.session() as session:
            settings = await guild_settings.get_or_create(session, 1)
            await asyncio.sleep(hold_s)  # the first handler keeps its transaction open
            return settings.guild_id

    assert await asyncio.gather(handler(0.2), handler(0.0)) == [1, 1]
    async with database.session() as session:
        assert await session.scalar(select(func.count()).select_from(GuildSettings)) == 1


async def test_concurrent_handlers_create_one_member_consent_row(database: Database) -> None:
    async def handler(hold_s: float) -> int:
        async with database.session() as session:
            member = await consent.get_or_create(session, 1, 2)
            await asyncio.sleep(hold_s)
            return member.user_id

    assert await asyncio.gather(handler(0.2), handler(0.0)) == [2, 2]
    async with database.session() as session:
        assert await session.scalar(select(func.count()).select_from(MemberConsent)) == 1
