"""Coaching for responders: the invitation, the private notes and digests, `/peercare coaching`, `/peercare me`."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from datetime import timedelta

import discord
from discord import app_commands
from discord.ext import commands

from bot.db.models import utcnow
from bot.services import coaching_delivery, consent, guild_settings
from bot.services.charts import render_level_trend_async
from bot.services.coaching import compose_first_contact, compose_invitation
from bot.services.coaching_delivery import DeliveryPlan, PlanKind
from bot.services.reply_scoring import ReplyScored
from bot.services.stats import level_trend

log = logging.getLogger(__name__)

DISCORD_DMS_CLOSED = 50007  # "Cannot send messages to this user"
FLUSH_JOB_ID = "coaching-flush"
FLUSH_EVERY_SECONDS = 60
TREND_DAYS = 90


class CoachingAnswer(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"peercare:coaching:(?P<answer>yes|no):(?P<guild_id>[0-9]+)",
):
    """Accept/Decline on the invitation DM. The guild id rides in the custom id, so it works after a restart."""

    def __init__(self, answer: str, guild_id: int) -> None:
        accepted = answer == "yes"
        super().__init__(
            discord.ui.Button(
                label="Yes, send me notes" if accepted else "No thanks",
                style=discord.ButtonStyle.success if accepted else discord.ButtonStyle.secondary,
                custom_id=f"peercare:coaching:{answer}:{guild_id}",
            )
        )
        self.accepted = accepted
        self.guild_id = guild_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> CoachingAnswer:
        return cls(match["answer"], int(match["guild_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        cog = interaction.client.get_cog("Coaching")  # type: ignore[union-attr]
        if not isinstance(cog, Coaching):
            await interaction.response.send_message("PeerCare is restarting; try again in a minute.")
            return
        await cog.answer_invitation(interaction, self.guild_id, self.accepted)


def invitation_view(guild_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CoachingAnswer("yes", guild_id))
    view.add_item(CoachingAnswer("no", guild_id))
    return view


class Coaching(commands.GroupCog, group_name="coaching", group_description="Private empathy coaching notes"):
    """Sends at most one note per reply, within each guild's interval and daily cap."""

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        # One delivery at a time per responder: the rate-limit check and the send must not interleave.
        self._locks: dict[tuple[int, int], asyncio.Lock] = {}
        super().__init__()

    @property
    def database(self):  # type: ignore[no-untyped-def]
        return self.bot.database  # type: ignore[attr-defined]

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(CoachingAnswer)
        scheduler = self.bot.scheduler  # type: ignore[attr-defined]
        # Queued notes (interval passed, cap reset, restart) go out from here; nothing depends on memory.
        scheduler.add_job(
            self._scheduled_flush,
            "interval",
            seconds=FLUSH_EVERY_SECONDS,
            id=FLUSH_JOB_ID,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
        )

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(CoachingAnswer)
        scheduler = self.bot.scheduler  # type: ignore[attr-defined]
        if scheduler.get_job(FLUSH_JOB_ID) is not None:
            scheduler.remove_job(FLUSH_JOB_ID)

    def _lock(self, guild_id: int, responder_id: int) -> asyncio.Lock:
        return self._locks.setdefault((guild_id, responder_id), asyncio.Lock())

    # -- delivery ----------------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_peercare_reply_scored(self, event: ReplyScored) -> None:
        try:
            async with self._lock(event.guild_id, event.responder_id):
                async with self.database.session() as session:
                    plan = await coaching_delivery.plan_for_new_reply(
                        session, event.reply_message_id, utcnow()
                    )
                await self._carry_out(plan)
        except Exception:
            log.exception("coaching failed for reply %s", event.reply_message_id)

    async def _scheduled_flush(self) -> None:
        try:
            await self.flush_due()
        except asyncio.CancelledError:
            # Shutdown interrupted it: each delivery is its own transaction and the next start flushes again.
            log.info("coaching flush interrupted by shutdown")

    async def flush_due(self) -> int:
        """Send what the rate limits now allow to everyone with waiting replies. Returns DMs attempted."""
        async with self.database.session() as session:
            waiting = await coaching_delivery.responders_with_queued_replies(session)
        attempted = 0
        for guild_id, responder_id in waiting:
            try:
                attempted += await self.deliver_due(guild_id, responder_id)
            except Exception:
                log.exception("coaching flush failed for member %s in guild %s", responder_id, guild_id)
        return attempted

    async def deliver_due(self, guild_id: int, responder_id: int) -> int:
        async with self._lock(guild_id, responder_id):
            async with self.database.session() as session:
                plan = await coaching_delivery.plan_due(session, guild_id, responder_id, utcnow())
            return await self._carry_out(plan)

    async def _carry_out(self, plan: DeliveryPlan) -> int:
        if plan.kind in (PlanKind.NOTHING, PlanKind.WAIT):
            if plan.kind is PlanKind.WAIT:
                log.info("coaching for member %s waits for the rate limit", plan.responder_id)
            return 0
        if plan.kind is PlanKind.INVITE:
            guild = self.bot.get_guild(plan.guild_id)
            content = compose_invitation(guild.name if guild else "this server")
            status, dm_id = await self._send_dm(plan.responder_id, content, invitation_view(plan.guild_id))
        elif plan.first_contact:
            assert plan.note is not None
            guild = self.bot.get_guild(plan.guild_id)
            content = compose_first_contact(guild.name if guild else "this server", plan.note)
            status, dm_id = await self._send_dm(plan.responder_id, content, invitation_view(plan.guild_id))
        else:
            assert plan.note is not None
            status, dm_id = await self._send_dm(plan.responder_id, plan.note.text)
        async with self.database.session() as session:
            await coaching_delivery.record_delivery(session, plan, status, utcnow(), dm_message_id=dm_id)
        return 1

    async def _send_dm(
        self, user_id: int, content: str, view: discord.ui.View | None = None
    ) -> tuple[str, int | None]:
        """Send a DM; returns (status, message id). Closed DMs and failures are answers, not crashes."""
        try:
            user = self.bot.get_user(user_id) or await self.bot.fetch_user(user_id)
            kwargs: dict[str, object] = {
                "allowed_mentions": discord.AllowedMentions.none(),
                "suppress_embeds": True,
            }
            if view is not None:
                kwargs["view"] = view
            message = await user.send(content, **kwargs)  # type: ignore[arg-type]
        except discord.Forbidden as exc:
            if exc.code == DISCORD_DMS_CLOSED:
                log.info("member %s does not accept DMs; not trying again", user_id)
                return "dms_closed", None
            log.warning("DM to member %s refused (code %s)", user_id, exc.code)
            return "failed", None
        except discord.HTTPException as exc:
            log.warning("DM to member %s failed: HTTP %s code %s", user_id, exc.status, exc.code)
            return "failed", None
        return "sent", message.id

    async def answer_invitation(
        self, interaction: discord.Interaction, guild_id: int, accepted: bool
    ) -> None:
        async with self.database.session() as session:
            await coaching_delivery.set_coaching_choice(
                session, guild_id, interaction.user.id, accepted, utcnow()
            )
        answer = (
            "✅ Thanks! I'll send you a short private note about your replies from time to time. "
            "Stop any time with `/peercare coaching off`."
            if accepted
            else "✅ No problem, I won't send you coaching notes. Change your mind with `/peercare coaching on`."
        )
        # Keep what the message said (it may hold a first note), drop the buttons, add the answer.
        previous = interaction.message.content if interaction.message is not None else ""
        content = f"{previous}\n\n{answer}" if previous else answer
        await interaction.response.edit_message(content=content[:2000], view=None)
        if accepted:
            await self.deliver_due(guild_id, interaction.user.id)

    # -- commands ----------------------------------------------------------------------------------------

    async def _set_choice(self, interaction: discord.Interaction, on: bool) -> None:
        if interaction.guild is None:
            raise app_commands.NoPrivateMessage()
        async with self.database.session() as session:
            await coaching_delivery.set_coaching_choice(
                session, interaction.guild.id, interaction.user.id, on, utcnow()
            )
            settings = await guild_settings.get_or_create(session, interaction.guild.id)
            shadow = settings.shadow_mode
        if on:
            text = (
                "Coaching is **on**: after you reply in a support channel I'll DM you a short private note "
                "about what your reply did well and one idea to try."
            )
            if shadow:
                text += " (This server is still trying PeerCare out in shadow mode, so notes start once it's live.)"
        else:
            text = "Coaching is **off**: I won't DM you notes about your replies. Turn it back on any time."
        await interaction.response.send_message(text, ephemeral=True)
        if on:
            await self.deliver_due(interaction.guild.id, interaction.user.id)

    @app_commands.command(name="on", description="Get private coaching notes about your replies")
    async def coaching_on(self, interaction: discord.Interaction) -> None:
        await self._set_choice(interaction, True)

    @app_commands.command(name="off", description="Stop coaching notes about your replies")
    async def coaching_off(self, interaction: discord.Interaction) -> None:
        await self._set_choice(interaction, False)


class MyProgress(commands.Cog):
    """`/peercare me`: a responder's own ER/IP/EX trend, visible only to them."""

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    @app_commands.command(name="me", description="Your own empathy trend over time (only you see it)")
    async def me(self, interaction: discord.Interaction) -> None:
        if interaction.guild is None:
            raise app_commands.NoPrivateMessage()
        await interaction.response.defer(ephemeral=True, thinking=True)
        since = utcnow() - timedelta(days=TREND_DAYS)
        async with self.bot.database.session() as session:  # type: ignore[attr-defined]
            points = await level_trend(session, interaction.guild.id, since, responder_id=interaction.user.id)
            member = await consent.find(session, interaction.guild.id, interaction.user.id)
        if not points:
            await interaction.followup.send(
                "I haven't scored any of your replies here yet. Reply to someone in a support channel, "
                "and your trend will show up here.",
                ephemeral=True,
            )
            return
        png = await render_level_trend_async(points, f"Your empathy levels, last {TREND_DAYS} days")
        total = sum(p.replies for p in points)

        def mean(attribute: str) -> float:
            return sum(getattr(p, attribute) * p.replies for p in points) / total

        summary = (
            f"**{total} replies** in the last {TREND_DAYS} days. Average level (0 none, 1 weak, 2 strong): "
            f"Emotional Reactions {mean('er'):.1f} · Interpretations {mean('ip'):.1f} · "
            f"Explorations {mean('ex'):.1f}."
        )
        if member is None or member.coaching.value != "on":
            summary += "\nWant a private note after each reply? `/peercare coaching on`."
        await interaction.followup.send(
            summary, file=discord.File(io.BytesIO(png), filename="my-empathy-trend.png"), ephemeral=True
        )


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Coaching(bot))
    await bot.add_cog(MyProgress(bot))
