"""A test-only extension: `/peercare deadline-public` and `/peercare deadline-form`, slow on demand.

No PeerCare command answers publicly or opens a modal from a slash command today; these two prove the
declarations (``answers_publicly``, ``opens_modal``) work for commands. Each waits in ``slow_step``, which a
test holds to make the command outlast the auto-defer delay.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot import interaction_replies as replies

log = logging.getLogger(__name__)


class DeadlineForm(discord.ui.Modal, title="A probe form"):
    note: discord.ui.TextInput = discord.ui.TextInput(label="Note", custom_id="deadline:note", required=False)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await replies.answer(interaction, "form received", ephemeral=True)


class DeadlineProbe(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    async def slow_step(self) -> None:
        """Nothing; tests hold it."""

    @replies.answers_publicly
    @app_commands.command(name="deadline-public", description="Test only: a public answer after a slow step")
    async def public(self, interaction: discord.Interaction) -> None:
        await self.slow_step()
        await replies.answer(interaction, "an answer for everyone")

    @replies.opens_modal
    @app_commands.command(name="deadline-form", description="Test only: a form after a slow step")
    async def form(self, interaction: discord.Interaction) -> None:
        await self.slow_step()
        await replies.open_modal(interaction, DeadlineForm(custom_id="peercare:deadline-probe:form"))


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(DeadlineProbe(bot))
