"""Slash commands and button clicks round-trip through the real bot; buttons survive a restart and a crash."""

from __future__ import annotations

import logging

import pytest

from bot.services import support_channels
from tests.discord_server import CommandError

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e


@pytest.fixture
def e2e_extra_extensions() -> list[str]:
    return ["tests.e2e.probe_cog"]


async def test_moderator_adds_a_support_channel_with_a_slash_command(e2e):
    command = await e2e.slash("peercare channel add", {"channel": e2e.cast.support}, user=e2e.cast.moderator)
    answer = await command.reply()
    assert answer.ephemeral
    assert e2e.cast.support.mention in answer.content and "support channel" in answer.content
    async with e2e.database.session() as session:
        assert await support_channels.is_support_channel(session, e2e.cast.guild.id, e2e.cast.support.id)


async def test_member_without_manage_server_is_refused_privately(e2e):
    command = await e2e.slash("peercare channel add", {"channel": e2e.cast.support}, user=e2e.cast.alice)
    answer = await command.reply()
    assert answer.ephemeral and "Manage Server" in answer.content
    async with e2e.database.session() as session:
        assert not await support_channels.is_support_channel(session, e2e.cast.guild.id, e2e.cast.support.id)


async def _post_counter(e2e):
    command = await e2e.slash("peercare probe button", user=e2e.cast.alice, channel=e2e.cast.general)
    return await command.reply()


async def test_button_click_updates_the_message(e2e):
    message = await _post_counter(e2e)
    assert message.custom_ids() == ["probe:count:0"] and not message.ephemeral
    click = await e2e.click(message, "probe:count:0", user=e2e.cast.bob)
    assert (await click.response())["type"] == 7  # UPDATE_MESSAGE
    assert message.content == "count=1"
    assert message.custom_ids() == ["probe:count:1"]


async def test_button_keeps_working_after_a_restart(e2e):
    message = await _post_counter(e2e)
    await e2e.restart_bot()
    await e2e.click(message, "probe:count:0", user=e2e.cast.bob)
    await e2e.wait_until(lambda: message.content == "count=1", 5, "the counter to update")


async def test_button_keeps_working_after_a_crash(e2e):
    message = await _post_counter(e2e)
    await e2e.restart_bot(crash=True)
    assert len(e2e.gateway.identifies) == 2
    await e2e.click(message, "probe:count:0", user=e2e.cast.bob)
    await e2e.wait_until(lambda: message.content == "count=1", 5, "the counter to update")


async def test_modal_opens_and_its_answer_reaches_the_bot(e2e):
    command = await e2e.slash("peercare probe note", user=e2e.cast.alice)
    assert (await command.response())["type"] == 9  # MODAL
    submitted = await e2e.submit_modal(command, {"probe:note": "feeling better"})
    assert (await submitted.reply()).content == "noted 14 characters"


async def test_slash_command_in_a_dm_reaches_the_bot(e2e):
    command = await e2e.slash(
        "peercare probe dm", user=e2e.cast.carol, channel=e2e.dm_channel(e2e.cast.carol)
    )
    assert "Sent you a DM" in (await command.reply()).content


async def test_slash_checks_the_path_and_options_against_the_synced_commands(e2e):
    with pytest.raises(CommandError, match="no subcommand 'ad'"):
        await e2e.slash("peercare channel ad", {"channel": e2e.cast.support}, user=e2e.cast.moderator)
    with pytest.raises(CommandError, match="required option 'channel'"):
        await e2e.slash("peercare channel add", user=e2e.cast.moderator)
    assert e2e.server.interactions == {}  # nothing was sent to the bot
