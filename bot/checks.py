"""Slash-command checks shared by cogs (a cog never imports another cog)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import discord
from discord import app_commands

T = TypeVar("T")


def moderator_only() -> Callable[[T], T]:
    """Manage Server, inside a server (subcommands cannot use Discord's default_permissions)."""

    async def predicate(interaction: discord.Interaction) -> bool:
        if interaction.guild is None:
            raise app_commands.NoPrivateMessage()
        if not interaction.permissions.manage_guild:
            raise app_commands.MissingPermissions(["manage_guild"])
        return True

    return app_commands.check(predicate)
