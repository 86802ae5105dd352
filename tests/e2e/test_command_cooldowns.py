"""Expensive commands (`/peercare me`, `stats`, `threshold-whatif`) have a per-member cooldown with a private answer."""

from __future__ import annotations

import pytest

from bot import command_cooldowns
from tests.e2e._features import add_support_channel

pytestmark = pytest.mark.e2e


async def _run(e2e, name: str, user, options=None):  # type: ignore[no-untyped-def]
    command = await e2e.slash(name, options or {}, user=user, channel=e2e.cast.support)
    return await command.reply(lambda m: bool(m.content), timeout=20.0)


async def _past_the_limit(e2e, name: str, user, cooldown=command_cooldowns.CHART_COMMANDS, options=None):  # type: ignore[no-untyped-def]
    """Use the command as often as the cooldown allows, then once more; return the last answer."""
    for _ in range(cooldown.rate):
        answer = await _run(e2e, name, user, options)
        assert "try again" not in answer.content
    return await _run(e2e, name, user, options)


async def test_peercare_me_cooldown_answers_privately(e2e):
    answer = await _past_the_limit(e2e, "peercare me", e2e.cast.bob)
    assert answer.ephemeral
    assert "You used this command a moment ago" in answer.content and "try again in" in answer.content
    assert not answer.attachments


async def test_peercare_stats_cooldown_answers_privately(e2e):
    await add_support_channel(e2e)
    answer = await _past_the_limit(e2e, "peercare stats", e2e.cast.moderator)
    assert answer.ephemeral and "try again in" in answer.content
    assert not answer.attachments


async def test_threshold_whatif_cooldown_answers_privately(e2e):
    await add_support_channel(e2e)
    answer = await _past_the_limit(
        e2e,
        "peercare threshold-whatif",
        e2e.cast.moderator,
        cooldown=command_cooldowns.REPLAY_COMMANDS,
        options={"high_threshold": "0.5"},
    )
    assert answer.ephemeral and "try again in" in answer.content
    assert "would have done" not in answer.content


async def test_command_cooldown_is_per_member(e2e):
    await _past_the_limit(e2e, "peercare me", e2e.cast.bob)
    answer = await _run(e2e, "peercare me", e2e.cast.carol)
    assert "try again" not in answer.content and "haven't scored any of your replies" in answer.content
