"""Privacy, Discord side: `/peercare privacy`, `/peercare forget-me`, member/guild departures and the retention job."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from datetime import datetime, timedelta

import discord
from discord import app_commands
from discord.ext import commands

from bot import interaction_replies as replies
from bot.app import PeerCareBot, cog_for
from bot.buttons import TwoChoiceButton
from bot.db.models import utcnow
from bot.db.session import Database
from bot.escalation_views import REDACTED_ALERT
from bot.services import checkins, message_inbox, privacy, retention
from bot.services.privacy import DeletionReport

log = logging.getLogger(__name__)

RETENTION_JOB_ID = "privacy-retention"
RETENTION_EVERY_MINUTES = 60
STARTUP_DELAY_SECONDS = 30


class ForgetMeConfirm(
    TwoChoiceButton,
    prefix="peercare:forget",
    yes=("confirm", "Yes, delete everything", discord.ButtonStyle.danger),
    no=("cancel", "Cancel", discord.ButtonStyle.secondary),
):
    """Confirm/cancel for `/peercare forget-me`; the subject is the member who asked, the only one who may press."""

    async def callback(self, interaction: discord.Interaction) -> None:
        if interaction.user.id != self.subject_id:
            await replies.answer(interaction, "Only the member who asked can confirm this.", ephemeral=True)
            return
        if not self.yes:
            await replies.update(interaction, content="Nothing was deleted.", view=None)
            return
        cog = await cog_for(interaction, Privacy, ephemeral=True)
        if cog is not None:
            await cog.forget(interaction)


def summary_lines(found: dict[str, list[dict[str, object]]]) -> str:
    if not found:
        return "PeerCare stores nothing about you."
    lines = [
        f"• **{table}**: {len(rows)} row{'s' if len(rows) != 1 else ''}" for table, rows in found.items()
    ]
    return "\n".join(lines)


class Privacy(commands.Cog):
    def __init__(self, bot: PeerCareBot) -> None:
        self.bot = bot

    @property
    def database(self) -> Database:
        return self.bot.database

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(ForgetMeConfirm)
        self.bot.scheduler.add_job(
            self.run_retention,
            "interval",
            minutes=RETENTION_EVERY_MINUTES,
            id=RETENTION_JOB_ID,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            # Once shortly after start-up too: text past its time never waits an hour.
            next_run_time=utcnow() + timedelta(seconds=STARTUP_DELAY_SECONDS),
        )

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(ForgetMeConfirm)
        scheduler = self.bot.scheduler
        if scheduler.get_job(RETENTION_JOB_ID) is not None:
            scheduler.remove_job(RETENTION_JOB_ID)

    # -- the scheduled job ---------------------------------------------------------------------------------

    async def run_retention(self, now: datetime | None = None) -> None:
        """Delete expired message text and the data of guilds whose grace period has passed."""
        now = now or utcnow()
        settings = self.bot.settings
        try:
            ownership = self.bot.guild_ownership
            await self.database.run(
                "purge expired message text",
                lambda session: retention.purge_expired_text(
                    session, now, settings.message_retention_days, ownership
                ),
            )
            # Ids only, but kept no longer than message text: finished inbox rows past retention go.
            finished_before = now - timedelta(days=max(settings.message_retention_days, 0))
            await self.database.run(
                "purge finished inbox rows",
                lambda session: message_inbox.purge_finished(session, finished_before),
            )
            # Each process deletes only the departed guilds its shards own (bot.sharding).
            reports = await self.database.run(
                "purge departed guilds",
                lambda session: retention.purge_departed_guilds(
                    session, now, settings.guild_data_grace_days, ownership
                ),
            )
            for report in reports:
                self._unschedule(report)
        except asyncio.CancelledError:
            # Shutdown interrupted it; the next start runs it again. Not an error, and nothing half-done:
            # each step is one transaction.
            log.info("retention job interrupted by shutdown")
        except Exception:
            log.exception("retention job failed; it runs again in %d minutes", RETENTION_EVERY_MINUTES)

    # -- commands ------------------------------------------------------------------------------------------

    @app_commands.command(name="privacy", description="See exactly what PeerCare stores about you")
    async def privacy_command(self, interaction: discord.Interaction) -> None:
        member_id = interaction.user.id
        found = await self.database.run(
            "describe a member's data", lambda session: privacy.describe_member_data(session, member_id)
        )
        text = (
            "Here is everything PeerCare stores about you, in every server, grouped by table "
            "(the attached file has every row exactly as stored):\n" + summary_lines(found)
        )
        file = discord.utils.MISSING
        if found:
            data = json.dumps(found, indent=2, ensure_ascii=False, default=str).encode("utf-8")
            file = discord.File(io.BytesIO(data), filename="peercare-my-data.json")
        text += "\n\n`/peercare forget-me` deletes all of it."
        await replies.answer(interaction, text, file=file, ephemeral=True)

    @app_commands.command(name="forget-me", description="Delete everything PeerCare stores about you")
    async def forget_me(self, interaction: discord.Interaction) -> None:
        view = ForgetMeConfirm.view(interaction.user.id)
        await replies.answer(
            interaction,
            "This deletes everything PeerCare stores about you in every server: your settings, scores, "
            "check-ins and any safety alerts about you. It cannot be undone. Continue?",
            view=view,
            ephemeral=True,
        )

    async def forget(self, interaction: discord.Interaction) -> None:
        member_id = interaction.user.id
        report = await self.database.run(
            "forget-me", lambda session: privacy.delete_member_data(session, member_id, reason="forget_me")
        )
        self._unschedule(report)
        await replies.update(
            interaction,
            content=f"Done — everything PeerCare stored about you is deleted ({report.total} records).",
            view=None,
        )
        await self._redact_alerts(report, "at the member's request")

    # -- departures ----------------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_raw_member_remove(self, payload: discord.RawMemberRemoveEvent) -> None:
        # Deleted at once (no grace period): a member who leaves takes their data with them.
        try:
            report = await self.database.run(
                "delete the data of a member who left",
                lambda session: privacy.delete_member_data(
                    session, payload.user.id, payload.guild_id, reason="member_left"
                ),
            )
            self._unschedule(report)
            await self._redact_alerts(report, "the member left the server")
        except Exception:
            log.exception("could not delete data of a member who left guild %s", payload.guild_id)

    @commands.Cog.listener()
    async def on_guild_remove(self, guild: discord.Guild) -> None:
        left_at = utcnow()
        await self.database.run(
            "mark a guild left", lambda session: retention.mark_guild_left(session, guild.id, left_at)
        )
        log.info("left guild %s: its data is deleted after the grace period", guild.id)

    @commands.Cog.listener()
    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self.database.run(
            "mark a guild returned", lambda session: retention.mark_guild_returned(session, guild.id)
        )

    # -- helpers -------------------------------------------------------------------------------------------

    def _unschedule(self, report: DeletionReport) -> None:
        scheduler = self.bot.scheduler
        for schedule_id in report.checkin_schedule_ids:
            if scheduler.get_job(checkins.job_id(schedule_id)) is not None:
                scheduler.remove_job(checkins.job_id(schedule_id))

    async def _redact_alerts(self, report: DeletionReport, why: str) -> None:
        for alert in report.alerts_to_redact:
            channel = self.bot.get_partial_messageable(alert.channel_id, guild_id=alert.guild_id)
            try:
                await channel.get_partial_message(alert.message_id).edit(
                    content=REDACTED_ALERT.format(why=why), embed=None, view=None
                )
            except discord.HTTPException as exc:
                log.warning("could not redact alert message %s: HTTP %s", alert.message_id, exc.status)


async def setup(bot: PeerCareBot) -> None:
    await bot.add_cog(Privacy(bot))
