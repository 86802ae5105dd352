"""`/peercare channel add|remove|list`: moderators choose the only channels PeerCare reads (and their threads)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import discord
from discord import app_commands
from discord.ext import commands
from sqlalchemy.ext.asyncio import AsyncSession

from bot import interaction_replies as replies
from bot.app import PeerCareBot
from bot.checks import moderator_only
from bot.services import support_channels

log = logging.getLogger(__name__)

ReadableChannel = discord.TextChannel | discord.ForumChannel


class SupportChannels(
    commands.GroupCog, group_name="channel", group_description="Support channels PeerCare reads"
):
    def __init__(self, bot: PeerCareBot) -> None:
        self.bot = bot
        super().__init__()

    async def _change(
        self,
        interaction: discord.Interaction,
        channel: ReadableChannel,
        operation: str,
        change: Callable[[AsyncSession, int, int, int], Awaitable[bool]],
    ) -> bool:
        """Opt ``channel`` in or out in the moderator's name (the audit trail says who changed what is read)."""
        assert interaction.guild is not None
        guild_id, moderator_id = interaction.guild.id, interaction.user.id
        return await self.bot.database.run(
            operation, lambda session: change(session, guild_id, channel.id, moderator_id)
        )

    @app_commands.command(
        name="add", description="Let PeerCare read this channel and its threads (Manage Server)"
    )
    @app_commands.describe(channel="A text or forum channel where members ask for and give support")
    @moderator_only()
    async def add(self, interaction: discord.Interaction, channel: ReadableChannel) -> None:
        assert interaction.guild is not None
        added = await self._change(interaction, channel, "add a support channel", support_channels.add)
        if added:
            text = (
                f"{channel.mention} is now a support channel: PeerCare reads new posts and replies there "
                "(and in its threads). Nothing elsewhere is read."
            )
            me = interaction.guild.me
            if me is not None and not channel.permissions_for(me).read_message_history:
                text += "\n⚠️ I cannot read message history there, so I cannot see the posts replies answer."
        else:
            text = f"{channel.mention} already is a support channel."
        await replies.answer(interaction, text, ephemeral=True)

    @app_commands.command(name="remove", description="Stop PeerCare reading this channel (Manage Server)")
    @moderator_only()
    async def remove(self, interaction: discord.Interaction, channel: ReadableChannel) -> None:
        removed = await self._change(
            interaction, channel, "remove a support channel", support_channels.remove
        )
        text = (
            f"{channel.mention} is no longer a support channel: nothing new there is read."
            if removed
            else f"{channel.mention} was not a support channel."
        )
        await replies.answer(interaction, text, ephemeral=True)

    @app_commands.command(name="list", description="The channels PeerCare reads (Manage Server)")
    @moderator_only()
    async def list_channels(self, interaction: discord.Interaction) -> None:
        assert interaction.guild is not None
        guild_id = interaction.guild.id
        channel_ids = await self.bot.database.run(
            "list support channels", lambda session: support_channels.list_channel_ids(session, guild_id)
        )
        if not channel_ids:
            text = "No support channels yet: PeerCare reads nothing. Add one with `/peercare channel add`."
        else:
            text = "PeerCare reads these channels and their threads:\n" + "\n".join(
                f"• <#{c}>" for c in channel_ids
            )
        await replies.answer(interaction, text, ephemeral=True)


async def setup(bot: PeerCareBot) -> None:
    await bot.add_cog(SupportChannels(bot))
