"""Two bot processes, one shard each, on one PostgreSQL database: each does its own guilds' periodic work once.

Covers what is owner-filtered today (docs/architecture.md, "Several processes"): check-in schedules and
retention with guild-leave deletion. The escalation sweep, re-pings, inbox recovery and coaching flush are not
filtered yet, so this test does not claim them. Needs PEERCARE_TEST_POSTGRES_URL (.ci/run sets it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.db.migrate import downgrade_database, upgrade_database
from bot.db.models import GuildSettings, utcnow
from bot.services import checkins, retention
from tests.discord_server import DiscordServer, Guild
from tests.discord_server.snowflakes import shard_of
from tests.e2e.conftest import BotRunner

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    pytest.mark.skipif(
        not os.environ.get("PEERCARE_TEST_POSTGRES_URL"),
        reason="PEERCARE_TEST_POSTGRES_URL is not set (CI starts a PostgreSQL server and sets it)",
    ),
]

SHARDS = 2


@pytest.fixture
def postgres_url() -> str:
    url = os.environ["PEERCARE_TEST_POSTGRES_URL"]
    downgrade_database(url, "base")  # start from empty whatever an earlier run left
    upgrade_database(url)
    return url


@pytest.fixture
async def fleet(
    discord_server: DiscordServer, postgres_url: str, e2e_inference_config, loaded_engines
) -> AsyncIterator[tuple[dict[int, BotRunner], dict[int, Guild]]]:
    """shard id -> a started bot process running only that shard; shard id -> a guild on that shard."""
    cast_shard = shard_of(discord_server.cast.guild.id, SHARDS)
    other = discord_server.world.add_guild(
        "Second Server", shard=(1 - cast_shard, SHARDS), members=[discord_server.cast.alice]
    )
    guilds = {cast_shard: discord_server.cast.guild, 1 - cast_shard: other}
    runners = {
        shard: BotRunner(
            discord_server,
            postgres_url,
            e2e_inference_config,
            {"shard_count": SHARDS, "shard_ids": str(shard)},
            [],
            loaded_engines,
        )
        for shard in range(SHARDS)
    }
    try:
        for runner in runners.values():
            await runner.start()
        yield runners, guilds
    finally:
        for runner in runners.values():
            with contextlib.suppress(Exception):
                await runner.stop()


def _checkin_guilds(runner: BotRunner) -> list[str]:
    assert runner.bot is not None
    return [job.id for job in runner.bot.scheduler.get_jobs() if job.id.startswith(checkins.JOB_PREFIX)]


async def test_two_processes_share_the_fleet_work(discord_server: DiscordServer, fleet):
    runners, guilds = fleet
    alice = discord_server.cast.alice
    for shard, runner in runners.items():
        assert [g.id for g in runner.bot.guilds] == [guilds[shard].id]  # each process: its shard's guild only

    # Check-ins: each guild's command reaches the process that owns it, which schedules it.
    for guild in guilds.values():
        command = await discord_server.slash(
            "peercare checkin on",
            {"cadence": "daily", "time": "09:30", "timezone": "UTC"},
            user=alice,
            channel=guild.channel_named("general"),
        )
        await command.reply(timeout=15)
    async with runners[0].bot.database.session() as session:
        schedules = {s.guild_id: s.id for s in await checkins.active_schedules(session)}
    assert set(schedules) == {g.id for g in guilds.values()}
    for shard, runner in runners.items():
        assert _checkin_guilds(runner) == [checkins.job_id(schedules[guilds[shard].id])]

    # After a restart each process restores only its own guild's schedule: every check-in fires once.
    for shard, runner in runners.items():
        await runner.restart()
        assert _checkin_guilds(runner) == [checkins.job_id(schedules[guilds[shard].id])]

    # Guild-leave deletion: both guilds left long ago; each process deletes only the one its shard owns.
    async with runners[0].bot.database.session() as session:
        for guild in guilds.values():
            await retention.mark_guild_left(session, guild.id, utcnow() - timedelta(days=30))

    async def remaining() -> set[int]:
        async with runners[0].bot.database.session() as session:
            return set(await session.scalars(select(GuildSettings.guild_id)))

    await runners[0].bot.get_cog("Privacy").run_retention()
    assert await remaining() == {guilds[1].id}
    assert _checkin_guilds(runners[1]) == [checkins.job_id(schedules[guilds[1].id])]  # untouched
    await runners[1].bot.get_cog("Privacy").run_retention()
    assert await remaining() == set()
