"""One place that turns slash-command failures into a clear, private answer for the person who ran it."""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot import interaction_replies as replies
from bot.app import PeerCareBot
from bot.command_cooldowns import cooldown_message
from bot.services.errors import UserFacingError

log = logging.getLogger(__name__)


def _permission_name(permission: str) -> str:
    # Discord's UI calls manage_guild "Manage Server"; people look for the name they see.
    return {"manage_guild": "Manage Server"}.get(permission, permission.replace("_", " ").title())


def describe_error(error: app_commands.AppCommandError) -> str:
    """A message a member or moderator can act on; never a stack trace."""
    original = getattr(error, "original", error)
    if isinstance(original, UserFacingError):
        return str(original)
    if isinstance(error, app_commands.MissingPermissions):
        needed = ", ".join(_permission_name(p) for p in error.missing_permissions)
        return f"You need the {needed} permission to do that."
    if isinstance(error, app_commands.BotMissingPermissions):
        needed = ", ".join(_permission_name(p) for p in error.missing_permissions)
        return f"I am missing the {needed} permission here; ask an admin to grant it."
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command only works inside a server."
    if isinstance(error, app_commands.TransformerError):
        wanted = error.transformer.channel_types
        if wanted and hasattr(error.value, "mention"):
            kinds = " or ".join(kind.name.replace("_", " ") for kind in wanted)
            return f"{error.value.mention} cannot be used here: pick a {kinds} channel."
        return f"I could not understand {error.value!r} as a {error.type.name.lower().replace('_', ' ')}."
    if isinstance(error, app_commands.CommandOnCooldown):  # a CheckFailure too: before the generic answer
        return cooldown_message(error)
    if isinstance(error, app_commands.CheckFailure):
        return "You are not allowed to use this command here."
    if isinstance(original, discord.Forbidden):
        return "Discord refused that action: I am missing a permission in that channel."
    return "Something went wrong on my side; the moderators can find the details in PeerCare's logs."


class ErrorHandler(commands.Cog):
    def __init__(self, bot: PeerCareBot) -> None:
        self.bot = bot
        self._previous_handler = bot.tree.on_error

    async def cog_load(self) -> None:
        self.bot.tree.on_error = self.on_app_command_error  # type: ignore[method-assign]

    async def cog_unload(self) -> None:
        self.bot.tree.on_error = self._previous_handler  # type: ignore[method-assign]

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        message = describe_error(error)
        expected = isinstance(getattr(error, "original", error), UserFacingError) or not isinstance(
            error, app_commands.CommandInvokeError
        )
        command = interaction.command.qualified_name if interaction.command else "?"
        if expected:
            log.info("command %s refused: %s", command, type(error).__name__)
        else:
            log.error("command %s failed", command, exc_info=error)
        try:
            # Deferred (by the command or automatically) or not: the member gets the message either way.
            await replies.answer(interaction, message, ephemeral=True)
        except discord.HTTPException:
            log.warning("could not tell the user about the error in %s", command)


async def setup(bot: PeerCareBot) -> None:
    await bot.add_cog(ErrorHandler(bot))
