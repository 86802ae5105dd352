"""A unit of work commits or rolls back as a whole, savepoints (get_or_create's nested blocks) included."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.db.migrate import downgrade_database, upgrade_database_async
from bot.db.models import AuditLogEntry, GuildSettings, MemberConsent
from bot.db.session import Database
from bot.services import consent, guild_settings

GUILD_ID = 810_000_000_000_000_001
USER_ID = 820_000_000_000_000_002


class Refused(Exception):
    """What a command raises after its first reads, e.g. a bad threshold."""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'peercare.db'}"
    else:
        url = os.environ.get("PEERCARE_TEST_POSTGRES_URL", "")
        if not url:
            pytest.skip("PEERCARE_TEST_POSTGRES_URL is not set (CI starts a PostgreSQL server and sets it)")
        # Start from empty whatever an earlier run left (Alembic runs its own loop: off this one).
        await asyncio.to_thread(downgrade_database, url, "base")
    await upgrade_database_async(url)
    db = Database(url)
    yield db
    await db.close()


async def _count(db: Database, model: type) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_guild_settings_created_in_a_failed_unit_of_work_are_not_saved(database: Database) -> None:
    with pytest.raises(Refused):
        async with database.session() as session:
            await guild_settings.get_or_create(session, GUILD_ID)
            raise Refused
    assert await _count(database, GuildSettings) == 0


async def test_member_consent_created_in_a_failed_unit_of_work_is_not_saved(database: Database) -> None:
    with pytest.raises(Refused):
        async with database.session() as session:
            await consent.get_or_create(session, GUILD_ID, USER_ID)
            raise Refused
    assert await _count(database, MemberConsent) == 0


async def test_writes_after_a_savepoint_roll_back_with_it_when_the_unit_fails(database: Database) -> None:
    with pytest.raises(Refused):
        async with database.session() as session:
            await guild_settings.update(session, GUILD_ID, USER_ID, shadow_mode=False)
            await session.flush()
            raise Refused
    assert await _count(database, GuildSettings) == 0
    assert await _count(database, AuditLogEntry) == 0


async def test_a_failed_run_leaves_nothing_of_its_savepoints(database: Database) -> None:
    async def create_then_refuse(session) -> None:
        await guild_settings.get_or_create(session, GUILD_ID)
        raise Refused

    with pytest.raises(Refused):
        await database.run(f"set up guild {GUILD_ID}", create_then_refuse)
    assert await _count(database, GuildSettings) == 0


async def test_guild_settings_created_in_a_successful_unit_of_work_are_saved(database: Database) -> None:
    async with database.session() as session:
        await guild_settings.get_or_create(session, GUILD_ID)
    async with database.session() as session:
        settings = await session.get(GuildSettings, GUILD_ID)
        assert settings is not None and settings.shadow_mode


async def test_a_unit_of_work_after_a_failed_one_commits_normally(database: Database) -> None:
    """The connection the failed unit used goes back to the pool clean: the next one commits."""
    with pytest.raises(Refused):
        async with database.session() as session:
            await guild_settings.get_or_create(session, GUILD_ID)
            raise Refused
    async with database.session() as session:
        await guild_settings.update(session, GUILD_ID, USER_ID, coaching_daily_cap=3)
    async with database.session() as session:
        settings = await session.get(GuildSettings, GUILD_ID)
        assert settings is not None and settings.coaching_daily_cap == 3
