"""The loopback gateway speaks shards: IDENTIFY [shard_id, shard_count], each guild's events on its own shard."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import discord
import pytest

from tests.discord_server import DiscordServer
from tests.discord_server.snowflakes import shard_of

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e

SHARDS = 2


class _ShardedClient(discord.AutoShardedClient):
    """A plain discord.py sharded client that records what each shard received."""

    def __init__(self, **options: Any) -> None:
        intents = discord.Intents.none()
        intents.guilds = intents.guild_messages = intents.dm_messages = intents.message_content = True
        super().__init__(intents=intents, guild_ready_timeout=0.05, **options)
        self.received: list[tuple[int | None, int | None]] = []  # (shard_id, guild_id) per message

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Discord's identify rate limit does not apply to the loopback server (discord.py waits 5 s)."""

    async def on_message(self, message: discord.Message) -> None:
        guild = message.guild
        self.received.append((guild.shard_id if guild else None, guild.id if guild else None))


@pytest.fixture
async def start_client(discord_server: DiscordServer) -> AsyncIterator[Callable[..., Any]]:
    clients: list[tuple[_ShardedClient, asyncio.Task[None]]] = []

    async def start(**options: Any) -> _ShardedClient:
        client = _ShardedClient(**options)
        task = asyncio.create_task(client.start(discord_server.new_token()))
        clients.append((client, task))
        ready = asyncio.create_task(client.wait_until_ready())
        done, _ = await asyncio.wait({ready, task}, timeout=20, return_when="FIRST_COMPLETED")
        assert ready in done, "the sharded client never became ready"
        return client

    yield start
    for client, task in clients:
        await client.close()
        with contextlib.suppress(asyncio.CancelledError, discord.ConnectionClosed):
            await task


def _guild_on_each_shard(server: DiscordServer) -> dict[int, int]:
    """shard id -> a guild on it (the cast's guild plus one added on the other shard)."""
    cast_shard = shard_of(server.cast.guild.id, SHARDS)
    other = server.world.add_guild(
        "Second Server", shard=(1 - cast_shard, SHARDS), members=[server.cast.alice]
    )
    return {cast_shard: server.cast.guild.id, 1 - cast_shard: other.id}


async def test_gateway_bot_recommends_the_server_shard_count(discord_server, start_client):
    discord_server.shard_count = SHARDS
    guilds = _guild_on_each_shard(discord_server)
    client = await start_client()  # no count: discord.py asks /gateway/bot
    assert client.shard_count == SHARDS
    assert sorted(i["shard"] for i in discord_server.gateway.identifies) == [[0, 2], [1, 2]]
    assert {g.id: g.shard_id for g in client.guilds} == {
        guild_id: shard for shard, guild_id in guilds.items()
    }


async def test_a_client_with_one_shard_sees_only_its_guilds_and_their_events(discord_server, start_client):
    guilds = _guild_on_each_shard(discord_server)
    client = await start_client(shard_ids=[0], shard_count=SHARDS)
    (identify,) = discord_server.gateway.identifies
    assert identify["shard"] == [0, SHARDS]
    assert [g.id for g in client.guilds] == [guilds[0]]

    world, cast = discord_server.world, discord_server.cast
    for guild_id in guilds.values():
        await discord_server.say(world.guilds[guild_id].channel_named("support"), cast.alice, "hello")
    await discord_server.say(world.dm_channel_for(cast.alice), cast.alice, "a DM goes to shard 0")
    await discord_server.wait_until(lambda: len(client.received) >= 2, 10, "shard 0's two messages")
    await asyncio.sleep(0.2)  # a stray event from the other shard's guild would arrive by now
    assert sorted(client.received, key=str) == sorted([(0, guilds[0]), (None, None)], key=str)


async def test_two_processes_each_get_their_own_shard(discord_server, start_client):
    guilds = _guild_on_each_shard(discord_server)
    first = await start_client(shard_ids=[0], shard_count=SHARDS)
    second = await start_client(shard_ids=[1], shard_count=SHARDS)
    cast = discord_server.cast
    for guild_id in guilds.values():
        await discord_server.say(
            discord_server.world.guilds[guild_id].channel_named("general"), cast.alice, "hi"
        )
    await discord_server.wait_until(lambda: first.received and second.received, 10, "each process's message")
    await asyncio.sleep(0.2)
    assert first.received == [(0, guilds[0])]
    assert second.received == [(1, guilds[1])]
    assert [g.id for g in second.guilds] == [guilds[1]]


async def test_a_malformed_shard_is_refused_with_4010(discord_server):
    client = _ShardedClient(shard_ids=[0], shard_count=SHARDS)
    # discord.py validates its own ids; send what a broken client would: shard 3 of 2.
    client.shard_ids = [3]
    with pytest.raises(discord.ConnectionClosed) as raised:
        await asyncio.wait_for(client.start(discord_server.new_token()), 10)
    await client.close()
    assert discord_server.gateway.identifies[-1]["shard"] == [3, SHARDS]
    assert raised.value.code == 4010
    assert not discord_server.gateway.sessions
