"""`/peercare safety`: a member's own answer to "alert moderators if I may be at risk?"."""

from __future__ import annotations

import logging
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands
from sqlalchemy.ext.asyncio import AsyncSession

from bot import interaction_replies as replies
from bot.app import PeerCareBot
from bot.db.models import EscalationConsent, utcnow
from bot.services import consent, escalation_cases

log = logging.getLogger(__name__)

_CHOICES = {"yes": EscalationConsent.YES, "no": EscalationConsent.NO, "ask": EscalationConsent.ASK_FIRST}

EXPLANATIONS = {
    EscalationConsent.YES: (
        "**Yes** — if something you post in a support channel looks like you may be at risk, PeerCare alerts "
        "this server's moderators (with a link and a short excerpt) so a person can reach out to you."
    ),
    EscalationConsent.ASK_FIRST: (
        "**Ask me first** — PeerCare sends you a private message with crisis resources and asks whether you "
        "would like a moderator to reach out. Moderators see nothing unless you say yes."
    ),
    EscalationConsent.NO: (
        "**No** — PeerCare only sends you a private message with crisis resources. No moderator is told and "
        "no one sees your message."
    ),
}


def confirmation(choice: EscalationConsent) -> str:
    others = "\n".join(f"• {text}" for option, text in EXPLANATIONS.items() if option is not choice)
    return (
        f"Saved. {EXPLANATIONS[choice]}\n\nThe other options, if you change your mind "
        f"(`/peercare safety` any time):\n{others}"
    )


class Safety(commands.Cog):
    def __init__(self, bot: PeerCareBot) -> None:
        self.bot = bot

    @app_commands.command(
        name="safety", description="Should PeerCare alert moderators if you may be at risk?"
    )
    @app_commands.describe(choice="yes: alert moderators · no: only send me resources · ask: ask me first")
    @app_commands.guild_only()
    async def safety(self, interaction: discord.Interaction, choice: Literal["yes", "no", "ask"]) -> None:
        chosen = _CHOICES[choice]
        guild_id, member_id = interaction.guild_id or 0, interaction.user.id

        async def record(session: AsyncSession) -> list[int]:
            await consent.set_escalation(session, guild_id, member_id, chosen)
            # A narrower choice reaches the member's open cases now: a posted alert is taken back at once.
            return await escalation_cases.apply_changed_consent(session, guild_id, member_id, utcnow())

        owed = await self.bot.database.run("record a safety choice", record)
        await replies.answer(interaction, confirmation(chosen), ephemeral=True)
        await self.bot.deliver_cases(owed)


async def setup(bot: PeerCareBot) -> None:
    await bot.add_cog(Safety(bot))
