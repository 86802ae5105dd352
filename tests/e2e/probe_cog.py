"""A test-only extension: ``/peercare probe dm|button|file|note`` to exercise DMs, buttons, uploads and modals.

Loaded only by tests that ask for it (``e2e_extra_extensions``); it uses discord.py exactly as the real cogs do.
"""

from __future__ import annotations

import io
import logging
import re

import discord
from discord import app_commands
from discord.ext import commands

log = logging.getLogger(__name__)

DISCORD_DMS_CLOSED = 50007
# A 1x1 PNG: the upload path is what is under test, not the picture.
PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
)


class NoteForm(discord.ui.Modal, title="A short note"):
    note: discord.ui.TextInput = discord.ui.TextInput(label="Note", custom_id="probe:note", max_length=200)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"noted {len(self.note.value)} characters", ephemeral=True)


class ProbeCounter(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"probe:count:(?P<count>[0-9]+)",
):
    """A button whose state rides in its custom id, so it keeps working after a restart."""

    def __init__(self, count: int) -> None:
        super().__init__(discord.ui.Button(label=f"Clicked {count} times", custom_id=f"probe:count:{count}"))
        self.count = count

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> ProbeCounter:
        return cls(int(match["count"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        view = discord.ui.View(timeout=None)
        view.add_item(ProbeCounter(self.count + 1))
        await interaction.response.edit_message(content=f"count={self.count + 1}", view=view)


class Probe(commands.GroupCog, group_name="probe", group_description="Test-only probes"):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        super().__init__()

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(ProbeCounter)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(ProbeCounter)

    @app_commands.command(name="dm", description="Send yourself a DM")
    async def dm(self, interaction: discord.Interaction, text: str = "hello from PeerCare") -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            await interaction.user.send(text, allowed_mentions=discord.AllowedMentions.none())
        except discord.Forbidden as exc:
            if exc.code != DISCORD_DMS_CLOSED:
                raise
            log.info("member %s does not accept DMs", interaction.user.id)
            await interaction.followup.send("I can't DM you: your DMs are closed.", ephemeral=True)
            return
        await interaction.followup.send("Sent you a DM.", ephemeral=True)

    @app_commands.command(name="button", description="Post a counter button")
    async def button(self, interaction: discord.Interaction) -> None:
        view = discord.ui.View(timeout=None)
        view.add_item(ProbeCounter(0))
        await interaction.response.send_message("count=0", view=view)

    @app_commands.command(name="file", description="Post a chart image in an embed")
    async def file(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True)
        embed = discord.Embed(title="Chart").set_image(url="attachment://chart.png")
        chart = discord.File(io.BytesIO(PNG_1x1), filename="chart.png")
        await interaction.followup.send(embed=embed, file=chart, ephemeral=True)

    @app_commands.command(name="note", description="Open a form")
    async def note(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(NoteForm())


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Probe(bot))
