"""The real bot starts against the loopback Discord server: READY, and its commands synced."""

from __future__ import annotations

import logging

import pytest

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e


async def test_bot_becomes_ready_in_the_test_guild(e2e):
    guild = e2e.bot.get_guild(e2e.cast.guild.id)
    assert guild is not None
    assert {c.name for c in guild.text_channels} == {"support", "general", "mod-alerts"}
    assert [t.id for t in guild.threads] == [e2e.cast.support_thread.id]
    assert guild.chunked and guild.member_count == len(e2e.cast.guild.members)
