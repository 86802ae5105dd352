"""Gateway life: heartbeats, a dropped connection RESUMEs with nothing lost, an invalid session re-identifies."""

from __future__ import annotations

import logging

import pytest

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e


def _cached_ids(e2e) -> set[int]:
    return {m.id for m in e2e.bot.cached_messages}


async def test_heartbeat_is_acknowledged(e2e):
    await e2e.wait_until(lambda: e2e.gateway.heartbeats >= 1, 5, "a heartbeat")
    await e2e.wait_until(lambda: e2e.bot.latency < 5, 5, "a heartbeat ACK")


async def test_dropped_connection_resumes_and_no_event_is_lost(e2e):
    await e2e.gateway.drop_connection()
    # Sent while the bot is disconnected: these exist only in the session's replay buffer.
    missed = [await e2e.say(e2e.cast.general, e2e.cast.bob, f"while you were away {n}") for n in range(3)]
    command = await e2e.slash("peercare channel list", user=e2e.cast.moderator)
    await e2e.wait_until(lambda: e2e.gateway.resumes, 10, "a RESUME")
    await e2e.wait_until(lambda: {m.id for m in missed} <= _cached_ids(e2e), 5, "the missed messages")
    assert "No support channels" in (await command.reply()).content
    (resume,) = e2e.gateway.resumes
    assert resume.replayed == len(missed) + 1
    assert len(e2e.gateway.identifies) == 1  # resumed, not re-identified


async def test_invalid_session_makes_the_bot_identify_again_and_keep_working(e2e):
    await e2e.gateway.invalidate_session(resumable=False)
    await e2e.wait_until(lambda: len(e2e.gateway.identifies) == 2, 10, "a second IDENTIFY")
    command = await e2e.slash("peercare channel list", user=e2e.cast.moderator)
    assert (await command.reply(timeout=10)).ephemeral


async def test_member_leaving_reaches_the_bot(e2e):
    guild = e2e.bot.get_guild(e2e.cast.guild.id)
    assert guild.get_member(e2e.cast.carol.id) is not None
    await e2e.remove_member(e2e.cast.carol)
    await e2e.wait_until(lambda: guild.get_member(e2e.cast.carol.id) is None, 5, "carol to leave")


async def test_guild_delete_reaches_the_bot(e2e):
    await e2e.delete_guild()
    await e2e.wait_until(lambda: e2e.bot.get_guild(e2e.cast.guild.id) is None, 5, "the guild to go")
