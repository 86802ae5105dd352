"""Escalation, Discord side: moderator alerts with restart-proof buttons, the "ask me first" DM, private resources.

Decisions and states live in ``bot.services.escalation``; this cog only sends, edits and reads buttons.
Every case is delivered from the database (``deliver``), so the first send, the start-up catch-up and the
periodic sweep all take the same path and the same per-case lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import weakref
from datetime import datetime

import discord
from discord.ext import commands
from sqlalchemy.ext.asyncio import AsyncSession

from bot import interaction_replies as replies
from bot.db.models import EscalationState, utcnow
from bot.services import consent, escalation, guild_settings, safety_messages
from bot.services.errors import UserFacingError
from bot.services.escalation import (
    ALERT_FOOTER_PREFIX,
    DeliveryPlan,
    DeliveryProblem,
    EscalationKind,
    ModeratorAction,
    Outcome,
)
from bot.services.events import SeekerRiskScored
from cogs.privacy import REDACTED_ALERT

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

_ACTION_LABELS = {
    ModeratorAction.ACKNOWLEDGE: ("Acknowledge", discord.ButtonStyle.primary),
    ModeratorAction.CLAIM: ("Claim", discord.ButtonStyle.success),
    ModeratorAction.RESOLVE: ("Resolve", discord.ButtonStyle.secondary),
    ModeratorAction.FALSE_ALARM: ("False alarm", discord.ButtonStyle.danger),
}
_STATUS_TEXT = {
    EscalationState.ALERTED: "Waiting for a moderator",
    EscalationState.ACKNOWLEDGED: "Acknowledged by <@{acknowledged_by}>",
    EscalationState.CLAIMED: "Claimed by <@{claimed_by}> — they are reaching out",
    EscalationState.RESOLVED: "Resolved by <@{resolved_by}>",
    EscalationState.FALSE_ALARM: "Marked as a false alarm by <@{resolved_by}>",
}


def _footer(escalation_id: int) -> str:
    return f"{ALERT_FOOTER_PREFIX}{escalation_id}"


def _role_mentions(role_id: int | None) -> discord.AllowedMentions:
    """Only the moderator role may ever be pinged: never @everyone, users, or roles inside the excerpt."""
    roles: list[discord.abc.Snowflake] = [discord.Object(id=role_id)] if role_id else []
    return discord.AllowedMentions(everyone=False, users=False, roles=roles, replied_user=False)


class AlertButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"peercare:alert:(?P<action>acknowledge|claim|resolve|false_alarm):(?P<escalation_id>[0-9]+)",
):
    """A moderator alert button; the escalation id rides in the custom id, so it works after a restart."""

    def __init__(self, action: ModeratorAction, escalation_id: int, *, disabled: bool = False) -> None:
        label, style = _ACTION_LABELS[action]
        super().__init__(
            discord.ui.Button(
                label=label,
                style=style,
                disabled=disabled,
                custom_id=f"peercare:alert:{action.value}:{escalation_id}",
            )
        )
        self.action = action
        self.escalation_id = escalation_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> AlertButton:
        return cls(ModeratorAction(match["action"]), int(match["escalation_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        cog = interaction.client.get_cog("Escalations")  # type: ignore[union-attr]
        if not isinstance(cog, Escalations):
            await replies.answer(
                interaction, "PeerCare is restarting; try again in a minute.", ephemeral=True
            )
            return
        await cog.moderator_pressed(interaction, self.escalation_id, self.action)


class AskFirstAnswer(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"peercare:askfirst:(?P<answer>yes|no):(?P<escalation_id>[0-9]+)",
):
    """The member's yes/no to "would you like a moderator to reach out?" (survives restarts)."""

    def __init__(self, wants_moderator: bool, escalation_id: int) -> None:
        answer = "yes" if wants_moderator else "no"
        super().__init__(
            discord.ui.Button(
                label="Yes, please reach out" if wants_moderator else "No, not now",
                style=discord.ButtonStyle.success if wants_moderator else discord.ButtonStyle.secondary,
                custom_id=f"peercare:askfirst:{answer}:{escalation_id}",
            )
        )
        self.wants_moderator = wants_moderator
        self.escalation_id = escalation_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> AskFirstAnswer:
        return cls(match["answer"] == "yes", int(match["escalation_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        cog = interaction.client.get_cog("Escalations")  # type: ignore[union-attr]
        if not isinstance(cog, Escalations):
            await replies.answer(interaction, "PeerCare is restarting; try again in a minute.")
            return
        await cog.member_answered(interaction, self.escalation_id, self.wants_moderator)


def alert_view(escalation_id: int, state: EscalationState = EscalationState.ALERTED) -> discord.ui.View:
    closed = state in (EscalationState.RESOLVED, EscalationState.FALSE_ALARM)
    view = discord.ui.View(timeout=None)
    for action in ModeratorAction:
        done = (action is ModeratorAction.ACKNOWLEDGE and state is not EscalationState.ALERTED) or (
            action is ModeratorAction.CLAIM and state is EscalationState.CLAIMED
        )
        view.add_item(AlertButton(action, escalation_id, disabled=closed or done))
    return view


def ask_first_view(escalation_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(AskFirstAnswer(True, escalation_id))
    view.add_item(AskFirstAnswer(False, escalation_id))
    return view


def _source_line(plan: DeliveryPlan) -> str:
    if plan.kind is EscalationKind.CHECKIN:
        return "From a private check-in: the member said they are struggling."
    if plan.kind is EscalationKind.TALK_REQUEST:
        return "From a private check-in: the member asked to talk to someone."
    return f"[Jump to the message]({plan.jump_url})"


def alert_embed(plan: DeliveryPlan, status: str = _STATUS_TEXT[EscalationState.ALERTED]) -> discord.Embed:
    description = _source_line(plan)
    if plan.member_said_yes:
        description += "\nThe member was asked privately and **would like a moderator to reach out**."
    embed = discord.Embed(
        title=f"A member may need support — {plan.tier} risk",
        description=description,
        colour=discord.Colour.red(),
        timestamp=plan.created_at,
    )
    embed.add_field(name="Member", value=f"<@{plan.member_id}>", inline=True)
    embed.add_field(name="Tier", value=plan.tier, inline=True)
    embed.add_field(name="Main labels", value=", ".join(plan.labels) or "—", inline=True)
    if plan.excerpt:
        quoted = "\n".join(f"> {line}" for line in discord.utils.escape_markdown(plan.excerpt).splitlines())
        embed.add_field(name="Excerpt", value=quoted[:1024], inline=False)
    embed.add_field(name="Status", value=status, inline=False)
    embed.set_footer(text=_footer(plan.escalation_id))
    return embed


class Escalations(commands.Cog):
    """Listens for scored seeker posts and delivers each escalation case exactly once."""

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        # One lock per case: the first send, the sweep and a button never interleave on it. Weak values, so
        # locks of finished cases go away by themselves.
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()
        # One per guild: two cases failing at once claim (and send) one notice, not two.
        self._notice_locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()
        self._startup_sweep: asyncio.Task[None] | None = None

    @property
    def database(self):  # type: ignore[no-untyped-def]
        return self.bot.database  # type: ignore[attr-defined]

    @property
    def retention_days(self) -> int:
        return self.bot.settings.message_retention_days  # type: ignore[attr-defined]

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(AlertButton, AskFirstAnswer)
        self.bot.scheduler.add_job(  # type: ignore[attr-defined]
            self._scheduled_sweep,
            "interval",
            seconds=SWEEP_EVERY_SECONDS,
            id=SWEEP_JOB_ID,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
        )

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(AlertButton, AskFirstAnswer)
        scheduler = self.bot.scheduler  # type: ignore[attr-defined]
        if scheduler.get_job(SWEEP_JOB_ID) is not None:
            scheduler.remove_job(SWEEP_JOB_ID)
        if self._startup_sweep is not None and not self._startup_sweep.done():
            # Let a running catch-up finish its transaction: cancelling it mid-commit leaves the database
            # driver's close pending and can hang shutdown. Each case is its own transaction, so a sweep
            # cut short after the grace period loses nothing; the next start sweeps again.
            _done, pending = await asyncio.wait({self._startup_sweep}, timeout=UNLOAD_GRACE_SECONDS)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        # Start-up catch-up: anything written but not delivered before a crash or restart goes out now.
        if self._startup_sweep is None or self._startup_sweep.done():
            self._startup_sweep = asyncio.create_task(self._sweep_logged())

    async def _sweep_logged(self) -> None:
        try:
            await self.sweep()
        except Exception:
            log.exception("escalation sweep failed; it runs again in %d s", SWEEP_EVERY_SECONDS)

    async def _scheduled_sweep(self) -> None:
        try:
            await self._sweep_logged()
        except asyncio.CancelledError:
            # Shutdown interrupted it: every step is its own transaction, and the next start sweeps again.
            log.info("escalation sweep interrupted by shutdown")

    # -- in: a scored post ---------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_peercare_seeker_risk_scored(self, event: SeekerRiskScored) -> None:
        try:
            decision = await self.database.run(
                f"escalation decision for message {event.message_id}",
                lambda session: escalation.handle_seeker_risk(
                    session,
                    event,
                    defaults=getattr(self.bot, "_peercare_default_thresholds", None),
                    now=utcnow(),
                    retention_days=self.retention_days,
                ),
            )
            if decision.escalation_id is not None:
                await self.deliver(decision.escalation_id)
        except Exception:
            if self.bot.is_closed():
                # Shutting down (the HTTP session is gone): the case is committed as pending and the next
                # start's sweep delivers it, so this is not a failure.
                log.warning(
                    "escalation for message %s left pending by shutdown; the next start delivers it",
                    event.message_id,
                )
                return
            # The case (if any) is committed; the sweep delivers it. Never log the excerpt.
            log.exception("escalation handling failed for message %s", event.message_id)

    # -- out: delivery -------------------------------------------------------------------------------------

    def _lock(self, escalation_id: int) -> asyncio.Lock:
        lock = self._locks.get(escalation_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[escalation_id] = lock
        return lock

    async def sweep(self, now: datetime | None = None) -> None:
        """Deliver every pending case and re-ping unacknowledged alerts. Safe to run at any time."""
        await self.database.run(
            "escalation sweep: recover missed posts",
            lambda session: escalation.recover_missed_posts(
                session,
                now or utcnow(),
                defaults=getattr(self.bot, "_peercare_default_thresholds", None),
                retention_days=self.retention_days,
            ),
        )
        pending = await self.database.run("escalation sweep: list pending cases", escalation.pending_ids)
        for escalation_id in pending:
            try:
                await self.deliver(escalation_id)
            except Exception:
                log.exception("sweep could not deliver escalation %s", escalation_id)
        await self.reping_due(now)

    async def deliver(self, escalation_id: int) -> None:
        """Send what a pending case still owes; does nothing for a case that is already delivered."""
        async with self._lock(escalation_id):
            plan = await self.database.run(
                f"plan delivery of escalation {escalation_id}",
                lambda session: escalation.plan_delivery(session, escalation_id),
            )
            if plan is None:
                return
            if plan.action is Outcome.ALERT_MODERATORS:
                await self._post_alert(plan)
            elif plan.action is Outcome.ASK_MEMBER:
                await self._ask_member(plan)
            else:
                await self._send_private_resources(plan)

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
                allowed_mentions=_role_mentions(plan.moderator_role_id),
            )
        except discord.Forbidden:
            await self._failed(
                plan.escalation_id,
                "missing permission to post in the alert channel (403)",
                problem=(plan.guild_id, DeliveryProblem.MISSING_PERMISSIONS),
            )
            return
        except discord.NotFound:
            await self._failed(
                plan.escalation_id,
                "the alert channel no longer exists (404): run /peercare setup",
                problem=(plan.guild_id, DeliveryProblem.ALERT_CHANNEL_GONE),
            )
            return
        except discord.HTTPException as exc:
            await self._failed(plan.escalation_id, f"Discord error {exc.status} while posting the alert")
            return
        await self._alerted(plan, message.id)

    async def _mark_attempt(self, escalation_id: int) -> None:
        await self.database.run(
            f"mark delivery attempt of escalation {escalation_id}",
            lambda session: escalation.mark_attempt(session, escalation_id),
        )

    async def _alerted(self, plan: DeliveryPlan, message_id: int) -> None:
        # If this fails after its retries, the case stays pending with an attempt counted: the sweep finds
        # the alert in the channel's history instead of posting it again.
        try:
            await self.database.run(
                f"mark escalation {plan.escalation_id} alerted",
                lambda session: escalation.mark_alerted(
                    session, plan.escalation_id, plan.alert_channel_id or 0, message_id, utcnow()
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
        footer = _footer(escalation_id)
        me = self.bot.user.id if self.bot.user else None
        try:
            async for message in channel.history(limit=HISTORY_LOOKBACK):
                if message.author.id == me and any(embed.footer.text == footer for embed in message.embeds):
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
            lambda session: escalation.mark_failed(session, escalation_id, error, utcnow()),
        )
        if problem is not None:
            await self._tell_moderators(*problem)

    # -- telling moderators that alerts are stuck ----------------------------------------------------------

    async def _tell_moderators(self, guild_id: int, problem: DeliveryProblem) -> None:
        """Once per problem and window: the owner's DM (private), else the guild's system channel."""
        lock = self._notice_locks.get(guild_id)
        if lock is None:
            lock = self._notice_locks[guild_id] = asyncio.Lock()
        async with lock:
            claimed = await self.database.run(
                f"claim moderator notice for guild {guild_id}",
                lambda session: escalation.claim_moderator_notice(session, guild_id, problem, utcnow()),
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
            kwargs = {"view": view} if view is not None else {}
            await channel.send(content, allowed_mentions=discord.AllowedMentions.none(), **kwargs)
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
                lambda session: escalation.mark_member_asked(session, plan.escalation_id),
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
                await escalation.mark_member_asked(session, plan.escalation_id)
            else:
                await consent.mark_dms_closed(session, plan.guild_id, plan.member_id)
                await escalation.mark_member_unreachable(session, plan.escalation_id)

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
            await escalation.mark_member_supported(session, plan.escalation_id, dms_closed=not sent)

        await self.database.run(f"record private resources for escalation {plan.escalation_id}", record)

    # -- re-pings ------------------------------------------------------------------------------------------

    async def reping_due(self, now: datetime | None = None) -> int:
        """Remind moderators of alerts nobody acknowledged in time. Returns reminders sent."""
        now = now or utcnow()
        async with self.database.session() as session:
            plans = await escalation.due_repings(session, now)
        sent = 0
        for plan in plans:
            async with self._lock(plan.escalation_id):
                async with self.database.session() as session:
                    if not await escalation.mark_repinged(session, plan.escalation_id, now):
                        continue
                role = f"<@&{plan.moderator_role_id}> " if plan.moderator_role_id else ""
                channel = self.bot.get_partial_messageable(plan.alert_channel_id, guild_id=plan.guild_id)
                try:
                    await channel.send(
                        f"{role}Reminder {plan.ping_number} of {escalation.MAX_REPINGS}: this alert is still "
                        "unacknowledged — a member may need support.",
                        reference=discord.MessageReference(
                            message_id=plan.alert_message_id,
                            channel_id=plan.alert_channel_id,
                            fail_if_not_exists=False,
                        ),
                        allowed_mentions=_role_mentions(plan.moderator_role_id),
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
        async with self.database.session() as session:
            row = await escalation.get(session, escalation_id)
            settings = await guild_settings.get_or_create(session, interaction.guild_id or 0)
            role_id = settings.moderator_role_id
        if row is None or row.guild_id != interaction.guild_id:
            await replies.answer(interaction, "This alert no longer exists.", ephemeral=True)
            return
        if not await self._is_moderator(interaction, role_id):
            await replies.answer(
                interaction,
                "Only moderators (the moderator role or Manage Server) can handle alerts.",
                ephemeral=True,
            )
            return
        try:
            async with self._lock(escalation_id), self.database.session() as session:
                row = await escalation.apply_moderator_action(
                    session, escalation_id, action, interaction.user.id, utcnow()
                )
                plan = escalation.plan_for(row, settings)
                status = _STATUS_TEXT[row.state].format(
                    acknowledged_by=row.acknowledged_by,
                    claimed_by=row.claimed_by,
                    resolved_by=row.resolved_by,
                )
                state = row.state
        except UserFacingError as exc:
            await replies.answer(interaction, str(exc), ephemeral=True)
            return
        await replies.update(
            interaction, embed=alert_embed(plan, status), view=alert_view(escalation_id, state)
        )

    async def member_answered(
        self, interaction: discord.Interaction, escalation_id: int, wants: bool
    ) -> None:
        try:
            async with self._lock(escalation_id), self.database.session() as session:
                row = await escalation.record_member_answer(
                    session, escalation_id, interaction.user.id, wants, utcnow()
                )
                settings = await guild_settings.get_or_create(session, row.guild_id)
                resources = guild_settings.crisis_resources_text(settings)
        except UserFacingError as exc:
            await replies.answer(interaction, str(exc))
            return
        reply = (
            safety_messages.ask_first_yes_reply() if wants else safety_messages.ask_first_no_reply(resources)
        )
        await replies.update(interaction, view=None)
        await replies.answer(interaction, reply)
        if wants:
            await self.deliver(escalation_id)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Escalations(bot))
