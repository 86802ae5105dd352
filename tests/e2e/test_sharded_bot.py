"""SHARD_COUNT: the real bot runs every shard in one process (AutoShardedBot) and serves guilds on each."""

from __future__ import annotations

import pytest

from bot.app import ShardedPeerCareBot
from tests.discord_server import DiscordServer, Guild
from tests.discord_server.snowflakes import shard_of

pytestmark = pytest.mark.e2e

SHARDS = 2


@pytest.fixture(autouse=True)
def _no_identify_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """discord.py waits 5 s before each IDENTIFY after the first (Discord's rate limit); loopback has none."""

    async def at_once(self: object, shard_id: int | None, *, initial: bool = False) -> None:
        return None

    monkeypatch.setattr(ShardedPeerCareBot, "before_identify_hook", at_once)


@pytest.fixture
def second_guild(discord_server: DiscordServer) -> Guild:
    """A guild on the shard the cast's guild is not on, there before the bot connects."""
    other_shard = 1 - shard_of(discord_server.cast.guild.id, SHARDS)
    return discord_server.world.add_guild(
        "Second Server", shard=(other_shard, SHARDS), members=[discord_server.cast.alice]
    )


@pytest.fixture
def e2e_settings(second_guild: Guild) -> dict[str, object]:
    return {"shard_count": SHARDS}


async def test_one_process_runs_every_shard_and_answers_in_each_guild(e2e, second_guild):
    assert isinstance(e2e.bot, ShardedPeerCareBot)
    assert sorted(i["shard"] for i in e2e.gateway.identifies) == [[0, SHARDS], [1, SHARDS]]
    assert e2e.bot.guild_ownership.owns_all  # every shard here: every guild's periodic work too
    for guild in (e2e.cast.guild, second_guild):
        bot_guild = e2e.bot.get_guild(guild.id)
        assert bot_guild is not None and bot_guild.shard_id == shard_of(guild.id, SHARDS)
        support = guild.channel_named("support")
        command = await e2e.slash(
            "peercare channel add", {"channel": support}, user=e2e.cast.owner, channel=support
        )
        assert support.mention in (await command.reply()).content
