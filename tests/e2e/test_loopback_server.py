"""The loopback server behaves like Discord for any client: intents are enforced, faults are counted."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import discord
import pytest

from tests.discord_server import faults
from tests.discord_server.recorder import RecordedRequest
from tests.discord_server.snowflakes import SnowflakeFactory

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e


@contextlib.asynccontextmanager
async def bare_client(server, intents: discord.Intents):
    client = discord.Client(intents=intents, guild_ready_timeout=0.05)
    seen: list[discord.Message] = []

    @client.event
    async def on_message(message: discord.Message) -> None:
        seen.append(message)

    task = asyncio.create_task(client.start(server.new_token()))
    await asyncio.wait_for(client.wait_until_ready(), 10)
    try:
        yield seen
    finally:
        await client.close()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_client_without_message_content_intent_gets_blank_guild_messages(discord_server):
    intents = discord.Intents.default()
    intents.message_content = False
    async with bare_client(discord_server, intents) as seen:
        cast = discord_server.cast
        await discord_server.say(cast.general, cast.alice, "private words")
        await discord_server.say(cast.general, cast.alice, f"{cast.bot.mention} hello")
        await discord_server.wait_until(lambda: len(seen) == 2, 5, "two messages")
    assert seen[0].content == ""
    assert seen[1].content.endswith("hello")  # a mention of the bot is always readable


def _request(method: str, path: str) -> RecordedRequest:
    return RecordedRequest(method, path, "/channels/{channel_id}/messages", {}, {}, None, [], {})


def test_fault_answers_only_the_next_matching_requests():
    plan = faults.FaultPlan()
    plan.next_request(faults.unknown_message(), method="POST", path="/channels/1/*", times=2)
    assert plan.take(_request("GET", "/channels/1/messages")) is None
    assert plan.take(_request("POST", "/channels/2/messages")) is None
    assert plan.take(_request("POST", "/channels/1/messages")).name == "unknown_message"
    assert plan.take(_request("POST", "/channels/1/messages")).name == "unknown_message"
    assert plan.take(_request("POST", "/channels/1/messages")) is None


def test_snowflakes_increase_even_within_one_millisecond():
    factory = SnowflakeFactory()
    ids = [factory.next() for _ in range(5000)]
    assert ids == sorted(set(ids))
