"""The real bot starts against the loopback Discord server: READY in the test guild, commands synced."""

from __future__ import annotations

import logging

import pytest

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e


def _subcommand_paths(command: dict, prefix: str = "") -> set[str]:
    paths = set()
    for option in command.get("options") or []:
        if option["type"] == 1:
            paths.add(f"{prefix}{option['name']}")
        elif option["type"] == 2:
            paths |= _subcommand_paths(option, f"{prefix}{option['name']} ")
    return paths


async def test_bot_becomes_ready_with_the_guild_channels_thread_and_members(e2e):
    guild = e2e.bot.get_guild(e2e.cast.guild.id)
    assert guild is not None
    assert {c.name for c in guild.text_channels} == {"support", "general", "mod-alerts"}
    assert [t.id for t in guild.threads] == [e2e.cast.support_thread.id]
    assert guild.default_role.id == guild.id
    assert guild.chunked and guild.member_count == len(e2e.cast.guild.members)
    assert e2e.bot.user.id == e2e.cast.bot.id


async def test_identify_asks_for_the_intents_peercare_needs(e2e):
    (identify,) = e2e.gateway.identifies
    intents = identify["intents"]
    for bit, name in (
        (1 << 0, "guilds"),
        (1 << 1, "members"),
        (1 << 9, "guild messages"),
        (1 << 15, "content"),
    ):
        assert intents & bit, f"{name} intent missing"


async def test_start_up_syncs_one_global_peercare_command_with_every_cog_subcommand(e2e):
    (sync,) = e2e.requests.find(method="PUT", route="/applications/{application_id}/commands")
    assert sync.status == 200
    assert [c["name"] for c in sync.json] == ["peercare"]
    paths = _subcommand_paths(sync.json[0])
    assert {"channel add", "channel remove", "channel list", "setup"} <= paths
    assert e2e.server.commands["global"][0]["id"]  # stored with an id, so slash() can invoke it


async def test_dev_guild_setting_syncs_commands_to_that_guild_only(discord_server, bot_runner):
    bot_runner.settings_overrides["dev_guild_id"] = discord_server.cast.guild.id
    await bot_runner.start()
    guild_route = "/applications/{application_id}/guilds/{guild_id}/commands"
    (sync,) = discord_server.requests.find(method="PUT", route=guild_route)
    assert sync.params["guild_id"] == str(discord_server.cast.guild.id)
    assert [c["name"] for c in sync.json] == ["peercare"]
    assert not discord_server.requests.find(method="PUT", route="/applications/{application_id}/commands")


async def test_start_up_uses_only_routes_the_server_knows(e2e):
    await e2e.settle()
    assert e2e.requests.unhandled() == []
