"""Every moderator command refuses an ordinary member, clearly and privately, and changes nothing.

The moderator commands are listed by hand (``MODERATOR_COMMANDS``) and checked against what the bot really
defines and syncs: a guard test fails when a command appears that is neither in that list nor in
``MEMBER_COMMANDS``, or when a command's permission check does not match the list it is in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from discord import app_commands
from sqlalchemy import select

from bot.db.models import Base
from bot.services import support_channels
from tests.discord_server.world import Cast

pytestmark = pytest.mark.e2e

Options = Callable[[Cast], dict[str, Any]]

# /peercare <path>: options that would change something if the caller were allowed.
MODERATOR_COMMANDS: dict[str, Options] = {
    "setup": lambda cast: {
        "alert_channel": cast.general,
        "moderator_role": cast.moderator_role,
        "shadow_mode": False,
        "high_threshold": "0.5",
        "crisis_resources": "Call 000",
    },
    "stats": lambda cast: {},
    "threshold-whatif": lambda cast: {"high_threshold": "0.5"},
    "channel add": lambda cast: {"channel": cast.general},
    "channel remove": lambda cast: {"channel": cast.support},
    "channel list": lambda cast: {},
}
# Commands any member may run about themselves.
MEMBER_COMMANDS = {
    "safety",
    "privacy",
    "forget-me",
    "me",
    "coaching on",
    "coaching off",
    "checkin on",
    "checkin off",
}
REFUSAL = "You need the Manage Server permission to do that."


def synced_paths(commands: list[dict[str, Any]]) -> set[str]:
    """Every runnable /peercare path the bot synced ("setup", "channel add", ...)."""
    peercare = next(c for c in commands if c["name"] == "peercare")
    paths: set[str] = set()

    def walk(options: list[dict[str, Any]], prefix: str) -> None:
        for option in options:
            if option["type"] == 1:
                paths.add(f"{prefix}{option['name']}")
            elif option["type"] == 2:
                walk(option.get("options") or [], f"{prefix}{option['name']} ")

    walk(peercare.get("options") or [], "")
    return paths


def permission_checked_paths(group: app_commands.Group) -> set[str]:
    """Paths whose definition (or a parent group) carries a Manage Server / has_permissions check."""
    found = set()
    for command in group.walk_commands():
        if not isinstance(command, app_commands.Command):
            continue
        checks = list(command.checks)
        parent = command.parent
        while parent is not None:
            checks.extend(getattr(parent, "checks", []))
            parent = parent.parent
        names = {getattr(check, "__qualname__", "") for check in checks}
        if any(
            n.startswith(("moderator_only.", "has_permissions.", "has_role.", "has_any_role.")) for n in names
        ):
            found.add(command.qualified_name.removeprefix(f"{group.name} "))
    return found


async def database_rows(e2e) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table: what a refused command must leave exactly as it was."""
    rows = {}
    async with e2e.database.session() as session:
        for table in Base.metadata.sorted_tables:
            rows[table.name] = [tuple(row) for row in (await session.execute(select(table))).all()]
    return rows


async def _with_support_channel(e2e) -> None:
    async with e2e.database.session() as session:
        await support_channels.add(session, e2e.cast.guild.id, e2e.cast.support.id, e2e.cast.moderator.id)


async def test_every_command_is_classified_and_moderator_commands_check_permissions(e2e):
    synced = synced_paths(e2e.server.commands["global"])
    checked = permission_checked_paths(e2e.bot.peercare_group)

    assert synced == set(MODERATOR_COMMANDS) | MEMBER_COMMANDS, "classify new commands in this module"
    assert checked == set(MODERATOR_COMMANDS)


@pytest.mark.parametrize("path", sorted(MODERATOR_COMMANDS))
async def test_moderator_command_refuses_an_ordinary_member(e2e, path):
    await _with_support_channel(e2e)
    before = await database_rows(e2e)

    command = await e2e.slash(f"peercare {path}", MODERATOR_COMMANDS[path](e2e.cast), user=e2e.cast.alice)
    answer = await command.reply()
    await e2e.settle()

    assert answer.ephemeral and answer.content == REFUSAL
    assert [m.content for m in command.messages] == [REFUSAL]
    assert await database_rows(e2e) == before
    # Nothing posted anywhere but the private answer.
    assert e2e.requests.find(method="POST", route="/channels/{channel_id}/messages") == []


@pytest.mark.parametrize("path", sorted(MODERATOR_COMMANDS))
async def test_moderator_command_works_for_a_moderator(e2e, path):
    """The control for the refusal above: the same call by a member with Manage Server is not refused."""
    await _with_support_channel(e2e)

    command = await e2e.slash(f"peercare {path}", MODERATOR_COMMANDS[path](e2e.cast), user=e2e.cast.moderator)
    answer = await command.reply(timeout=15.0)

    assert answer.ephemeral and REFUSAL not in command.text


@pytest.mark.parametrize("path", sorted(MODERATOR_COMMANDS))
async def test_moderator_command_refuses_in_a_dm(e2e, path):
    dm = e2e.dm_channel(e2e.cast.moderator)
    before = await database_rows(e2e)

    command = await e2e.slash(
        f"peercare {path}", MODERATOR_COMMANDS[path](e2e.cast), user=e2e.cast.moderator, channel=dm
    )
    answer = await command.reply()

    assert answer.content == "This command only works inside a server."
    assert await database_rows(e2e) == before
