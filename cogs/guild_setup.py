"""Moderator setup: `/peercare setup` (alerts, thresholds, resources, coaching, shadow mode), `stats`, `threshold-whatif`."""

from __future__ import annotations

import io
import logging
import unicodedata
from datetime import timedelta
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import command_cooldowns
from bot import interaction_replies as replies
from bot.app import PeerCareBot
from bot.checks import moderator_only
from bot.db.models import CoachingDefault, EscalationConsent, GuildSettings, utcnow
from bot.services import escalation_delivery, guild_settings, risk_thresholds, verdict_stats
from bot.services.charts import render_level_trend_async
from bot.services.errors import UserFacingError
from bot.services.stats import guild_counts, level_trend
from inference.types import RiskThresholds

log = logging.getLogger(__name__)

STATS_DAYS = 90
CRISIS_RESOURCES_MAX = 1500


async def default_thresholds(bot: PeerCareBot) -> RiskThresholds | None:
    """The risk model card's calibrated thresholds for RISK_MODEL (``bot.risk_defaults``); None if unreadable."""
    return await bot.risk_defaults.load()


def _summary(settings: GuildSettings, thresholds: RiskThresholds | None) -> discord.Embed:
    embed = discord.Embed(title="PeerCare settings", colour=discord.Colour.blurple())
    embed.add_field(
        name="Mode",
        value="Shadow mode: scoring only, no DMs, no alerts"
        if settings.shadow_mode
        else "Live: coaching DMs and alerts are sent",
        inline=False,
    )
    embed.add_field(
        name="Alert channel",
        value=f"<#{settings.alert_channel_id}>" if settings.alert_channel_id else "not set",
    )
    embed.add_field(
        name="Moderator role",
        value=f"<@&{settings.moderator_role_id}>" if settings.moderator_role_id else "not set",
    )
    embed.add_field(name="Re-alert after", value=f"{settings.realert_after_minutes} min")
    embed.add_field(
        name="Coaching",
        value=(
            f"{'members opt in' if settings.coaching_default is CoachingDefault.OPT_IN else 'on unless a member opts out'}"
            f"; at most one note per {settings.coaching_interval_minutes} min, {settings.coaching_daily_cap} a day"
        ),
        inline=False,
    )
    embed.add_field(
        name="Escalation default",
        value={
            EscalationConsent.YES: "alert moderators",
            EscalationConsent.NO: "send the member crisis resources privately",
            EscalationConsent.ASK_FIRST: "ask the member first",
        }[settings.default_escalation_consent],
        inline=False,
    )
    embed.add_field(
        name="Risk thresholds" + ("" if settings.risk_thresholds else " (model card defaults)"),
        value=(risk_thresholds.describe(thresholds)[:1024] or "—")
        if thresholds is not None
        else "the risk model's thresholds cannot be read (check RISK_MODEL)",
        inline=False,
    )
    embed.add_field(
        name="Crisis resources",
        value=guild_settings.crisis_resources_text(settings)[:1024],
        inline=False,
    )
    return embed


class GuildSetup(commands.Cog):
    """Thin: validates what Discord cannot, hands changes to ``guild_settings`` (which audits them)."""

    def __init__(self, bot: PeerCareBot) -> None:
        self.bot = bot

    @app_commands.command(name="setup", description="Configure PeerCare for this server (Manage Server)")
    @app_commands.describe(
        alert_channel="Channel where moderator alerts are posted",
        moderator_role="Role pinged on an alert",
        high_threshold="0-1 for every main risk label (e.g. 0.8), or label=value pairs, or `default`",
        elevated_threshold="0-1 for every main risk label, or label=value pairs, or `default`",
        crisis_resources="Text sent privately to a member at risk (helplines for your community)",
        coaching_default="Do members get coaching unless they say otherwise?",
        escalation_default="For members who have not chosen: alert moderators, ask them first, or only resources",
        shadow_mode="Score and log only: no DMs, no alerts (for trying PeerCare out safely)",
        coaching_interval_minutes="At most one coaching note per responder per this many minutes",
        coaching_daily_cap="At most this many coaching notes per responder per day",
        realert_minutes="Re-ping moderators when an alert is not acknowledged after this many minutes",
    )
    @moderator_only()
    async def setup_command(
        self,
        interaction: discord.Interaction,
        alert_channel: discord.TextChannel | None = None,
        moderator_role: discord.Role | None = None,
        high_threshold: str | None = None,
        elevated_threshold: str | None = None,
        crisis_resources: app_commands.Range[str, 1, CRISIS_RESOURCES_MAX] | None = None,
        coaching_default: Literal["opt_in", "opt_out"] | None = None,
        escalation_default: Literal["yes", "ask_first", "no"] | None = None,
        shadow_mode: bool | None = None,
        coaching_interval_minutes: app_commands.Range[int, 0, 10080] | None = None,
        coaching_daily_cap: app_commands.Range[int, 1, 50] | None = None,
        realert_minutes: app_commands.Range[int, 1, 1440] | None = None,
    ) -> None:
        assert interaction.guild is not None
        await replies.defer(interaction, ephemeral=True)
        changes: dict[str, object] = {}
        if alert_channel is not None:
            changes["alert_channel_id"] = alert_channel.id
        if moderator_role is not None:
            if moderator_role.is_default():
                raise UserFacingError(
                    "Pick a moderator role, not @everyone: alerts would ping the whole server."
                )
            changes["moderator_role_id"] = moderator_role.id
        if crisis_resources is not None:
            text = crisis_resources.replace("\\n", "\n").strip()
            # Zero-width and other format characters alone show as nothing: no helpline at all.
            if all(ch.isspace() or unicodedata.category(ch) == "Cf" for ch in text):
                raise UserFacingError(
                    "The crisis resources text is empty; give helplines your members can use."
                )
            changes["crisis_resources"] = text
        if coaching_default is not None:
            changes["coaching_default"] = CoachingDefault(coaching_default)
        if escalation_default is not None:
            changes["default_escalation_consent"] = EscalationConsent(escalation_default)
        if shadow_mode is not None:
            changes["shadow_mode"] = shadow_mode
        if coaching_interval_minutes is not None:
            changes["coaching_interval_minutes"] = coaching_interval_minutes
        if coaching_daily_cap is not None:
            changes["coaching_daily_cap"] = coaching_daily_cap
        if realert_minutes is not None:
            changes["realert_after_minutes"] = realert_minutes

        defaults = await default_thresholds(self.bot)
        previous: RiskThresholds | None = None
        async with self.bot.database.session() as session:
            if high_threshold is not None or elevated_threshold is not None:
                if defaults is None:
                    raise UserFacingError(
                        "I cannot read the risk model's default thresholds (check RISK_MODEL), "
                        "so I cannot change thresholds right now."
                    )
                # Validate against what is stored without creating a row: a refusal writes nothing.
                current = await guild_settings.find(session, interaction.guild.id)
                previous = risk_thresholds.from_mapping(
                    current.risk_thresholds if current else None, defaults
                )
                changes["risk_thresholds"] = risk_thresholds.updated(
                    current.risk_thresholds if current is not None else None,
                    defaults,
                    high=high_threshold,
                    elevated=elevated_threshold,
                )
            settings = await guild_settings.update(
                session, interaction.guild.id, interaction.user.id, **changes
            )
            thresholds = (
                risk_thresholds.from_mapping(settings.risk_thresholds, defaults)
                if defaults is not None
                else None
            )
            embed = _summary(settings, thresholds)
            warnings = self._warnings(interaction.guild, settings)
            warnings += await escalation_delivery.delivery_problems(session, interaction.guild.id)
            what_if: list[str] = []
            if high_threshold is not None and previous is not None and thresholds is not None:
                # Advice beside the change: what it would have meant for the alerts moderators judged.
                what_if = verdict_stats.describe_what_if(
                    await verdict_stats.threshold_what_if(
                        session, interaction.guild.id, baseline=previous, other=thresholds, now=utcnow()
                    ),
                    title="What the new high threshold would have done",
                    baseline="the previous thresholds",
                )
        content = "Saved." if changes else "Current settings (pass options to change them):"
        if warnings:
            content += "\n" + "\n".join(f"⚠️ {w}" for w in warnings)
        if what_if:
            content += "\n\n" + "\n".join(what_if)
        await replies.answer(interaction, content, embed=embed, ephemeral=True)

    @staticmethod
    def _warnings(guild: discord.Guild, settings: GuildSettings) -> list[str]:
        warnings = []
        if not settings.shadow_mode and settings.alert_channel_id is None:
            warnings.append("No alert channel: high-risk posts cannot reach moderators. Set `alert_channel`.")
        if settings.alert_channel_id is not None:
            channel = guild.get_channel(settings.alert_channel_id)
            me = guild.me
            if isinstance(channel, discord.TextChannel) and me is not None:
                permissions = channel.permissions_for(me)
                if not (permissions.send_messages and permissions.embed_links):
                    warnings.append(f"I cannot send messages with embeds in {channel.mention}.")
        return warnings

    @app_commands.command(
        name="stats", description="PeerCare numbers and empathy levels over time (Manage Server)"
    )
    @command_cooldowns.per_member(command_cooldowns.CHART_COMMANDS)  # checked after moderator_only
    @moderator_only()
    async def stats(self, interaction: discord.Interaction) -> None:
        assert interaction.guild is not None
        await replies.defer(interaction, ephemeral=True)
        now = utcnow()
        async with self.bot.database.session() as session:
            counts = await guild_counts(session, interaction.guild.id, now)
            points = await level_trend(session, interaction.guild.id, now - timedelta(days=STATS_DAYS))
            weeks = await verdict_stats.alert_precision(session, interaction.guild.id, now, days=STATS_DAYS)
        png = await render_level_trend_async(
            points, f"{interaction.guild.name}: empathy levels, last {STATS_DAYS} days"
        )
        text = "\n".join(
            [
                f"**Support channels:** {counts.support_channels}",
                f"**Replies scored:** {counts.replies_scored} ({counts.replies_last_7_days} in the last 7 days) "
                f"by {counts.responders} responders",
                f"**Coaching:** {counts.coaching_notes_sent} notes, {counts.digests_sent} digests, "
                f"{counts.invitations_sent} invitations sent",
                f"**Messages risk-judged:** {counts.seeker_posts_scored} ({counts.high_risk_posts} high risk)",
                f"**Escalations:** {counts.escalations}",
            ]
        )
        await replies.answer(
            interaction,
            text,
            # An embed holds 4096 characters: 13 weekly lines would not fit in a message's 2000.
            embed=discord.Embed(
                description="\n".join(verdict_stats.describe_precision(weeks, days=STATS_DAYS)),
                colour=discord.Colour.blurple(),
            ),
            file=discord.File(io.BytesIO(png), filename="peercare-stats.png"),
            ephemeral=True,
        )

    @app_commands.command(
        name="threshold-whatif",
        description="What another high risk threshold would have done over the last 90 days (Manage Server)",
    )
    @app_commands.describe(
        high_threshold="0-1 for every main risk label (e.g. 0.8), or label=value pairs, or `default`"
    )
    @command_cooldowns.per_member(command_cooldowns.REPLAY_COMMANDS)  # checked after moderator_only
    @moderator_only()
    async def threshold_whatif(self, interaction: discord.Interaction, high_threshold: str) -> None:
        """Advice only: replays stored scores with the other threshold; changes and stores nothing."""
        assert interaction.guild is not None
        await replies.defer(interaction, ephemeral=True)
        defaults = await default_thresholds(self.bot)
        if defaults is None:
            raise UserFacingError(
                "I cannot read the risk model's default thresholds (check RISK_MODEL), "
                "so I cannot compare thresholds right now."
            )
        async with self.bot.database.session() as session:
            current = await guild_settings.find(session, interaction.guild.id)
            stored = current.risk_thresholds if current is not None else None
            what_if = await verdict_stats.threshold_what_if(
                session,
                interaction.guild.id,
                baseline=risk_thresholds.from_mapping(stored, defaults),
                other=verdict_stats.hypothetical_thresholds(stored, defaults, high=high_threshold),
                now=utcnow(),
                days=STATS_DAYS,
            )
        shown = high_threshold.strip().replace("`", "")[:80]
        lines = verdict_stats.describe_what_if(
            what_if,
            title=f"What `high_threshold: {shown}` would have done",
            baseline="your current thresholds",
        )
        lines.append(f"Advice only: nothing was changed. To use it: `/peercare setup high_threshold:{shown}`")
        await replies.answer(interaction, "\n".join(lines), ephemeral=True)


async def setup(bot: PeerCareBot) -> None:
    await bot.add_cog(GuildSetup(bot))
