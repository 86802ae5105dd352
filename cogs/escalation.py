"""Escalation, Discord side: moderator alerts with restart-proof buttons, the "ask me first" DM, private resources.

Decisions and states live in the ``bot.services.escalation_*`` modules (policy, cases, delivery, actions); this
cog only sends, edits and reads buttons. Every case is delivered from the database (``deliver``), so the first
send, the start-up catch-up and the periodic sweep all take the same path and the same per-case lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

import discord
from discord.ext import commands
from sqlalchemy.ext.asyncio import AsyncSession

from bot import interaction_replies
from bot.app import PeerCareBot
from bot.db.models import utcnow
from bot.db.session import Database
from bot.escalation_views import (
    REDACTED_ALERT,
    AlertButton,
    AskFirstAnswer,
    alert_embed,
    alert_view,
    ask_first_view,
    footer,
    role_mentions,
)
from bot.scheduling import every, finish_or_cancel, run_logged, run_scheduled, stop
from bot.services import (
    consent,
    escalation_actions,
    escalation_cases,
    escalation_delivery,
    guild_settings,
    safety_messages,
)
from bot.services.errors import UserFacingError
from bot.services.escalation_delivery import DeliveryPlan, DeliveryProblem
from bot.services.escalation_policy import ModeratorAction, Outcome
from bot.services.locks import KeyedLocks

log = logging.getLogger(__name__)

DISCORD_DMS_CLOSED = 50007
UNLOAD_GRACE_SECONDS = 5.0
SWEEP_JOB_ID = "escalation-sweep"
SWEEP_EVERY_SECONDS = 60
# How far back a re-delivery looks for an alert it may have posted before a crash.
HISTORY_LOOKBACK = 50
# What moderators are told (owner's DM, else the system channel) when alerts cannot reach them. No member,
# no text: the system channel may be public.
_PROBLEM_NOTICES = {
    DeliveryProblem.NO_ALERT_CHANNEL: "no moderator alert channel is set",
    DeliveryProblem.MISSING_PERMISSIONS: "I am missing permissions to post in the moderator alert channel",
    DeliveryProblem.ALERT_CHANNEL_GONE: "the moderator alert channel no longer exists",
}

# What a posted alert becomes when the member withdraws their consent: no member, none of their words.
WITHDRAWN_ALERT = (
    "This alert was withdrawn: the member changed their mind about moderators being told. "
    "PeerCare has taken their words out of it and keeps none of them."
)

# Posting an alert failed: what is kept on the case, and the setup problem moderators are told of.
_ALERT_SEND_ERRORS: dict[type[discord.HTTPException], tuple[str, DeliveryProblem]] = {
    discord.Forbidden: (
        "missing permission to post in the alert channel (403)",
        DeliveryProblem.MISSING_PERMISSIONS,
    ),
    discord.NotFound: (
        "the alert channel no longer exists (404): run /peercare setup",
        DeliveryProblem.ALERT_CHANNEL_GONE,
    ),
}


class Escalations(commands.Cog):
    """The bot's case desk: delivers each escalation case exactly once and takes the alert buttons."""

    def __init__(self, bot: PeerCareBot) -> None:
        self.bot = bot
        # One lock per case: the first send, the sweep and a button never interleave on it. Weak values, so
        # locks of finished cases go away by themselves.
        self._locks: KeyedLocks[int] = KeyedLocks()
        # One per guild: two cases failing at once claim (and send) one notice, not two.
        self._notice_locks: KeyedLocks[int] = KeyedLocks()
        self._startup_sweep: asyncio.Task[None] | None = None

    @property
    def database(self) -> Database:
        return self.bot.database

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(AlertButton, AskFirstAnswer)
        self.bot.case_desk = self
        every(self.bot.scheduler, SWEEP_JOB_ID, SWEEP_EVERY_SECONDS, self._scheduled_sweep)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(AlertButton, AskFirstAnswer)
        if self.bot.case_desk is self:
            self.bot.case_desk = None
        stop(self.bot.scheduler, SWEEP_JOB_ID)
        # Let a running catch-up finish its transaction: cancelling it mid-commit leaves the database driver's
        # close pending and can hang shutdown. Each case is its own transaction, so a sweep cut short after the
        # grace period loses nothing; the next start sweeps again.
        await finish_or_cancel(self._startup_sweep, UNLOAD_GRACE_SECONDS)

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        # Start-up catch-up: anything written but not delivered before a crash or restart goes out now.
        if self._startup_sweep is None or self._startup_sweep.done():
            self._startup_sweep = asyncio.create_task(self._sweep_logged())

    async def _sweep_logged(self) -> None:
        await run_logged(log, "escalation sweep", self.sweep, again_in_s=SWEEP_EVERY_SECONDS)

    async def _scheduled_sweep(self) -> None:
        # Every step is its own transaction: a sweep that shutdown interrupts is simply run at the next start.
        await run_scheduled(log, "escalation sweep", self.sweep, again_in_s=SWEEP_EVERY_SECONDS)

    # -- out: delivery -------------------------------------------------------------------------------------

    def _lock(self, escalation_id: int) -> asyncio.Lock:
        return self._locks.of(escalation_id)

    async def sweep(self, now: datetime | None = None) -> None:
        """Deliver every pending case, redraw outdated alerts, re-ping unacknowledged ones. Safe at any time."""
        # Only the guilds this process's shards own (bot.sharding): each case is swept by one process.
        owned = self.bot.guild_ownership
        pending = await self.database.run(
            "escalation sweep: list pending cases",
            lambda session: escalation_delivery.pending_ids(session, owned),
        )
        for escalation_id in pending:
            try:
                await self.deliver(escalation_id)
            except Exception:
                log.exception("sweep could not deliver escalation %s", escalation_id)
        await self.reping_due(now)

    async def deliver(self, escalation_id: int) -> None:
        """Send what a case still owes (its first message, or an alert redrawn after a message joined it).

        Nothing for a case of a guild another process owns (an answer given in a DM reaches shard 0's
        process): that guild's own sweep sends it, within ``SWEEP_EVERY_SECONDS``.
        """
        async with self._lock(escalation_id):
            plan = await self.database.run(
                f"plan delivery of escalation {escalation_id}",
                lambda session: escalation_delivery.plan_delivery(
                    session, escalation_id, owned=self.bot.guild_ownership
                ),
            )
            if plan is None:
                await self._redraw(escalation_id)
            elif plan.action is Outcome.ALERT_MODERATORS:
                await self._post_alert(plan)
            elif plan.action is Outcome.ASK_MEMBER:
                await self._ask_member(plan)
            else:
                await self._send_private_resources(plan)

    async def _redraw(self, escalation_id: int) -> None:
        """Edit a posted alert to show the messages that joined its case: no new message, no ping."""
        plan = await self.database.run(
            f"plan redraw of escalation {escalation_id}",
            lambda session: escalation_delivery.plan_redraw(
                session, escalation_id, owned=self.bot.guild_ownership
            ),
        )
        if plan is None or plan.alert_channel_id is None or plan.alert_message_id is None:
            return
        channel = self.bot.get_partial_messageable(plan.alert_channel_id, guild_id=plan.guild_id)
        message = channel.get_partial_message(plan.alert_message_id)
        try:
            if plan.consent_withdrawn:
                await message.edit(
                    content=WITHDRAWN_ALERT,
                    embed=None,
                    view=None,
                    allowed_mentions=discord.AllowedMentions.none(),
                )
            else:
                await message.edit(
                    embed=alert_embed(plan),
                    view=alert_view(plan.escalation_id, plan.state),
                    allowed_mentions=discord.AllowedMentions.none(),  # an edit never pings
                )
        except discord.NotFound:
            log.warning("escalation %s: its alert message is gone; not redrawn", escalation_id)
        except discord.HTTPException as exc:
            log.warning(
                "escalation %s: alert not redrawn (HTTP %s); the sweep retries", escalation_id, exc.status
            )
            return
        if plan.consent_withdrawn:
            log.info("escalation %s: the member withdrew consent; alert taken back", escalation_id)
        else:
            log.info(
                "escalation %s: alert redrawn with %d later messages", escalation_id, len(plan.more_messages)
            )
        await self.database.run(
            f"mark escalation {escalation_id} redrawn",
            lambda session: escalation_delivery.mark_redrawn(session, escalation_id, plan),
        )

    async def _post_alert(self, plan: DeliveryPlan) -> None:
        if plan.alert_channel_id is None:
            await self._failed(
                plan.escalation_id,
                "no moderator alert channel is set: run /peercare setup",
                problem=(plan.guild_id, DeliveryProblem.NO_ALERT_CHANNEL),
            )
            return
        channel = self.bot.get_partial_messageable(plan.alert_channel_id, guild_id=plan.guild_id)
        if plan.may_have_been_sent:
            found = await self._find_previous_alert(channel, plan.escalation_id)
            if found is not None:
                log.info("escalation %s: found the alert posted before a restart", plan.escalation_id)
                await self._alerted(plan, found.id)
                return
        await self._mark_attempt(plan.escalation_id)
        role = f"<@&{plan.moderator_role_id}> " if plan.moderator_role_id else ""
        try:
            message = await channel.send(
                f"{role}A member may need support. Please take a look and press **Acknowledge**.",
                embed=alert_embed(plan),
                view=alert_view(plan.escalation_id),
                allowed_mentions=role_mentions(plan.moderator_role_id),
            )
        except discord.HTTPException as exc:
            error, problem = _ALERT_SEND_ERRORS.get(
                type(exc), (f"Discord error {exc.status} while posting the alert", None)
            )
            await self._failed(
                plan.escalation_id, error, problem=(plan.guild_id, problem) if problem else None
            )
            return
        await self._alerted(plan, message.id)

    async def _mark_attempt(self, escalation_id: int) -> None:
        await self.database.run(
            f"mark delivery attempt of escalation {escalation_id}",
            lambda session: escalation_delivery.mark_attempt(session, escalation_id),
        )

    async def _alerted(self, plan: DeliveryPlan, message_id: int) -> None:
        # If this fails after its retries, the case stays pending with an attempt counted: the sweep finds
        # the alert in the channel's history instead of posting it again.
        try:
            await self.database.run(
                f"mark escalation {plan.escalation_id} alerted",
                lambda session: escalation_delivery.mark_alerted(
                    session,
                    plan.escalation_id,
                    plan.alert_channel_id or 0,
                    message_id,
                    utcnow(),
                    drawn=plan,
                ),
            )
        except LookupError:
            # The member's data was erased while the alert was on its way: take their words back out.
            log.info("escalation %s was erased while its alert was sent: redacting it", plan.escalation_id)
            channel = self.bot.get_partial_messageable(plan.alert_channel_id or 0, guild_id=plan.guild_id)
            with contextlib.suppress(discord.HTTPException):
                await channel.get_partial_message(message_id).edit(
                    content=REDACTED_ALERT.format(why="while the alert was being sent"), embed=None, view=None
                )

    async def _find_previous_alert(
        self, channel: discord.PartialMessageable, escalation_id: int
    ) -> discord.Message | None:
        wanted = footer(escalation_id)
        me = self.bot.user.id if self.bot.user else None
        try:
            async for message in channel.history(limit=HISTORY_LOOKBACK):
                if message.author.id == me and any(embed.footer.text == wanted for embed in message.embeds):
                    return message
        except discord.HTTPException as exc:
            # Cannot look: sending again risks a duplicate, not sending risks a missed crisis. We send.
            log.warning(
                "could not read alert channel history for escalation %s: HTTP %s", escalation_id, exc.status
            )
        return None

    async def _failed(
        self, escalation_id: int, error: str, *, problem: tuple[int, DeliveryProblem] | None = None
    ) -> None:
        """Keep the case pending for the sweep; for a setup problem, tell the moderators (rate-limited)."""
        await self.database.run(
            f"record failed delivery of escalation {escalation_id}",
            lambda session: escalation_delivery.mark_failed(session, escalation_id, error, utcnow()),
        )
        if problem is not None:
            await self._tell_moderators(*problem)

    # -- telling moderators that alerts are stuck ----------------------------------------------------------

    async def _tell_moderators(self, guild_id: int, problem: DeliveryProblem) -> None:
        """Once per problem and window: the owner's DM (private), else the guild's system channel."""
        async with self._notice_locks.of(guild_id):
            claimed = await self.database.run(
                f"claim moderator notice for guild {guild_id}",
                lambda session: escalation_delivery.claim_moderator_notice(
                    session, guild_id, problem, utcnow()
                ),
            )
            if not claimed:
                return
            guild = self.bot.get_guild(guild_id)
            text = (
                f"⚠️ PeerCare cannot deliver moderator alerts in **{guild.name if guild else 'your server'}**: "
                f"{_PROBLEM_NOTICES[problem]}. Alerts wait and are retried every minute; "
                "a moderator should run `/peercare setup` to fix it."
            )
            where = await self._send_notice(guild, text)
            if where is None:
                log.warning(
                    "guild %s: alerts cannot be delivered (%s) and moderators could not be told either "
                    "(owner's DMs closed, no usable system channel)",
                    guild_id,
                    problem.value,
                )
            else:
                log.warning(
                    "guild %s: alerts cannot be delivered (%s); moderators were told via %s",
                    guild_id,
                    problem.value,
                    where,
                )

    async def _send_notice(self, guild: discord.Guild | None, text: str) -> str | None:
        if guild is None:
            return None
        mentions = discord.AllowedMentions.none()
        if guild.owner_id is not None:
            try:
                channel = await self.bot.create_dm(discord.Object(id=guild.owner_id))
                await channel.send(text, allowed_mentions=mentions)
                return "the owner's DM"
            except discord.HTTPException as exc:
                log.info("could not DM the owner of guild %s: HTTP %s", guild.id, exc.status)
        if guild.system_channel is not None:
            try:
                await guild.system_channel.send(text, allowed_mentions=mentions)
                return "the system channel"
            except discord.HTTPException as exc:
                log.info("could not post in the system channel of guild %s: HTTP %s", guild.id, exc.status)
        return None

    def _guild_name(self, guild_id: int) -> str | None:
        guild = self.bot.get_guild(guild_id)
        return guild.name if guild is not None else None

    async def _dm(self, member_id: int, content: str, view: discord.ui.View | None = None) -> bool | None:
        """True when sent, False when the member's DMs are closed, None on another error (retry later)."""
        try:
            channel = await self.bot.create_dm(discord.Object(id=member_id))
            await channel.send(
                content,
                allowed_mentions=discord.AllowedMentions.none(),
                view=view if view is not None else discord.utils.MISSING,
            )
        except discord.Forbidden as exc:
            if exc.code == DISCORD_DMS_CLOSED:
                return False
            raise
        return True

    async def _already_asked(self, plan: DeliveryPlan) -> bool:
        """After a crash mid-delivery: is our question (its Yes button) already in the member's DMs?"""
        wanted = AskFirstAnswer(True, plan.escalation_id).item.custom_id
        try:
            channel = await self.bot.create_dm(discord.Object(id=plan.member_id))
            async for message in channel.history(limit=HISTORY_LOOKBACK):
                for row in message.components:
                    if any(
                        getattr(child, "custom_id", None) == wanted for child in getattr(row, "children", [])
                    ):
                        return True
        except discord.HTTPException as exc:
            log.warning(
                "could not read DM history for escalation %s: HTTP %s", plan.escalation_id, exc.status
            )
        return False

    async def _ask_member(self, plan: DeliveryPlan) -> None:
        if plan.may_have_been_sent and await self._already_asked(plan):
            await self.database.run(
                f"mark member asked for escalation {plan.escalation_id}",
                lambda session: escalation_delivery.mark_member_asked(session, plan.escalation_id),
            )
            return
        text = safety_messages.ask_first_message(plan.crisis_resources, self._guild_name(plan.guild_id))
        await self._mark_attempt(plan.escalation_id)
        try:
            sent = await self._dm(plan.member_id, text, ask_first_view(plan.escalation_id))
        except discord.HTTPException as exc:
            await self._failed(plan.escalation_id, f"Discord error {exc.status} while asking the member")
            return

        async def record(session: AsyncSession) -> None:
            if sent:
                await escalation_delivery.mark_member_asked(session, plan.escalation_id)
            else:
                await consent.mark_dms_closed(session, plan.guild_id, plan.member_id)
                await escalation_delivery.mark_member_unreachable(session, plan.escalation_id)

        await self.database.run(f"record the question for escalation {plan.escalation_id}", record)

    async def _send_private_resources(self, plan: DeliveryPlan) -> None:
        text = safety_messages.private_resources_message(
            plan.crisis_resources, self._guild_name(plan.guild_id)
        )
        await self._mark_attempt(plan.escalation_id)
        try:
            sent = await self._dm(plan.member_id, text)
        except discord.HTTPException as exc:
            await self._failed(plan.escalation_id, f"Discord error {exc.status} while messaging the member")
            return

        async def record(session: AsyncSession) -> None:
            if not sent:
                await consent.mark_dms_closed(session, plan.guild_id, plan.member_id)
            await escalation_delivery.mark_member_supported(session, plan.escalation_id, dms_closed=not sent)

        await self.database.run(f"record private resources for escalation {plan.escalation_id}", record)

    # -- re-pings ------------------------------------------------------------------------------------------

    async def reping_due(self, now: datetime | None = None) -> int:
        """Remind moderators of alerts nobody acknowledged in time. Returns reminders sent.

        Each reminder is checked just before it goes (``mark_repinged``): shadow mode or a withdrawn
        consent stops it, and an alert whose consent was withdrawn is taken back at once.
        """
        moment = now or utcnow()
        plans = await self.database.run(
            "list alerts due a re-ping",
            lambda session: escalation_delivery.due_repings(session, moment, self.bot.guild_ownership),
        )
        sent = 0
        for plan in plans:
            async with self._lock(plan.escalation_id):
                if not await self.database.run(
                    f"count a re-ping of escalation {plan.escalation_id}",
                    lambda session, plan=plan: escalation_delivery.mark_repinged(
                        session, plan.escalation_id, moment
                    ),
                ):
                    await self._redraw(plan.escalation_id)  # owed only if consent was withdrawn just now
                    continue
                role = f"<@&{plan.moderator_role_id}> " if plan.moderator_role_id else ""
                channel = self.bot.get_partial_messageable(plan.alert_channel_id, guild_id=plan.guild_id)
                try:
                    await channel.send(
                        f"{role}Reminder {plan.ping_number} of {escalation_delivery.MAX_REPINGS}: this alert is still "
                        "unacknowledged — a member may need support.",
                        reference=discord.MessageReference(
                            message_id=plan.alert_message_id,
                            channel_id=plan.alert_channel_id,
                            fail_if_not_exists=False,
                        ),
                        allowed_mentions=role_mentions(plan.moderator_role_id),
                    )
                    sent += 1
                except discord.HTTPException as exc:
                    await self._failed(plan.escalation_id, f"Discord error {exc.status} while re-pinging")
        return sent

    # -- buttons -------------------------------------------------------------------------------------------

    async def _is_moderator(self, interaction: discord.Interaction, role_id: int | None) -> bool:
        if interaction.guild_id is None or not isinstance(interaction.user, discord.Member):
            return False
        if interaction.permissions.manage_guild:
            return True
        return role_id is not None and any(role.id == role_id for role in interaction.user.roles)

    async def moderator_pressed(
        self, interaction: discord.Interaction, escalation_id: int, action: ModeratorAction
    ) -> None:
        guild_id = interaction.guild_id or 0

        async def look_up(session: AsyncSession) -> tuple[int | None, int | None]:
            row = await escalation_cases.get(session, escalation_id)
            settings = await guild_settings.get_or_create(session, guild_id)
            return (row.guild_id if row is not None else None), settings.moderator_role_id

        case_guild, role_id = await self.database.run(f"look up escalation {escalation_id}", look_up)
        if case_guild is None or case_guild != interaction.guild_id:
            await interaction_replies.answer(interaction, "This alert no longer exists.", ephemeral=True)
            return
        if not await self._is_moderator(interaction, role_id):
            await interaction_replies.answer(
                interaction,
                "Only moderators (the moderator role or Manage Server) can handle alerts.",
                ephemeral=True,
            )
            return
        moderator_id = interaction.user.id

        async def act(session: AsyncSession) -> DeliveryPlan:
            row = await escalation_actions.apply_moderator_action(
                session, escalation_id, action, moderator_id, utcnow()
            )
            return escalation_delivery.plan_for(
                row, await guild_settings.get_or_create(session, row.guild_id)
            )

        try:
            async with self._lock(escalation_id):
                plan = await self.database.run(f"{action.value} escalation {escalation_id}", act)
        except UserFacingError as exc:
            await interaction_replies.answer(interaction, str(exc), ephemeral=True)
            return
        await interaction_replies.update(
            interaction, embed=alert_embed(plan), view=alert_view(escalation_id, plan.state)
        )

    async def member_answered(
        self, interaction: discord.Interaction, escalation_id: int, wants: bool
    ) -> None:
        member_id = interaction.user.id

        async def answer(session: AsyncSession) -> str:
            row = await escalation_actions.record_member_answer(
                session, escalation_id, member_id, wants, utcnow()
            )
            return guild_settings.crisis_resources_text(
                await guild_settings.get_or_create(session, row.guild_id)
            )

        try:
            async with self._lock(escalation_id):
                resources = await self.database.run(
                    f"record the answer to escalation {escalation_id}", answer
                )
        except UserFacingError as exc:
            await interaction_replies.answer(interaction, str(exc))
            return
        reply = (
            safety_messages.ask_first_yes_reply() if wants else safety_messages.ask_first_no_reply(resources)
        )
        await interaction_replies.update(interaction, view=None)
        await interaction_replies.answer(interaction, reply)
        if wants:
            await self.deliver(escalation_id)


async def setup(bot: PeerCareBot) -> None:
    await bot.add_cog(Escalations(bot))
