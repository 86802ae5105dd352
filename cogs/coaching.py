"""Coaching for responders: the invitation, the private notes and digests, `/peercare coaching`, `/peercare me`."""

from __future__ import annotations

import asyncio
import io
import logging
from datetime import timedelta

import discord
from discord import app_commands
from discord.ext import commands
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from bot import command_cooldowns
from bot import interaction_replies as replies
from bot.app import PeerCareBot, cog_for
from bot.buttons import TwoChoiceButton
from bot.db.models import utcnow
from bot.db.session import Database, transient_reason
from bot.services import coaching_delivery, consent, guild_settings
from bot.services.charts import render_level_trend_async
from bot.services.coaching import compose_first_contact, compose_invitation
from bot.services.coaching_delivery import DeliveryPlan, PlanKind, UnfinishedDelivery
from bot.services.reply_scoring import ReplyScored
from bot.services.stats import level_trend
from inference.types import Mechanism

log = logging.getLogger(__name__)

DISCORD_DMS_CLOSED = 50007  # "Cannot send messages to this user"
FLUSH_JOB_ID = "coaching-flush"
FLUSH_EVERY_SECONDS = 60
TREND_DAYS = 90
# How far back the DM history is read for a note left unrecorded (a member's DMs with the bot are short).
HISTORY_LOOKBACK = 100
# Discord's clock (message timestamps) and ours may differ a little.
HISTORY_CLOCK_MARGIN = timedelta(minutes=2)


class CoachingAnswer(
    TwoChoiceButton,
    prefix="peercare:coaching",
    yes=("yes", "Yes, send me notes", discord.ButtonStyle.success),
    no=("no", "No thanks", discord.ButtonStyle.secondary),
):
    """Accept/Decline on the invitation DM; the subject is the guild (a DM has none of its own)."""

    async def callback(self, interaction: discord.Interaction) -> None:
        cog = await cog_for(interaction, Coaching)
        if cog is not None:
            await cog.answer_invitation(interaction, self.subject_id, self.yes)


def invitation_view(guild_id: int) -> discord.ui.View:
    return CoachingAnswer.view(guild_id)


class Coaching(commands.GroupCog, group_name="coaching", group_description="Private empathy coaching notes"):
    """Sends at most one note per reply, within each guild's interval and daily cap."""

    def __init__(self, bot: PeerCareBot) -> None:
        self.bot = bot
        # One delivery at a time per responder: the rate-limit check and the send must not interleave.
        self._locks: dict[tuple[int, int], asyncio.Lock] = {}
        super().__init__()

    @property
    def database(self) -> Database:
        return self.bot.database

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(CoachingAnswer)
        scheduler = self.bot.scheduler
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
        scheduler = self.bot.scheduler
        if scheduler.get_job(FLUSH_JOB_ID) is not None:
            scheduler.remove_job(FLUSH_JOB_ID)

    def _lock(self, guild_id: int, responder_id: int) -> asyncio.Lock:
        return self._locks.setdefault((guild_id, responder_id), asyncio.Lock())

    # -- delivery ----------------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_peercare_reply_scored(self, event: ReplyScored) -> None:
        try:
            await self.coach_new_reply(event.guild_id, event.responder_id, event.reply_message_id)
        except Exception as exc:
            if transient_reason(exc) is None:
                log.exception("coaching failed for reply %s", event.reply_message_id)
            else:  # Database.run has said why; the reply stays pending and the flush plans it later
                log.warning("coaching for reply %s left for the flush", event.reply_message_id)

    async def coach_new_reply(self, guild_id: int, responder_id: int, reply_message_id: int) -> int:
        """Plan (and claim) a newly scored reply's coaching, then send it. Returns DMs attempted."""
        async with self._lock(guild_id, responder_id):
            plan = await self.database.run(
                f"plan coaching for reply {reply_message_id}",
                lambda session: coaching_delivery.plan_and_claim_new_reply(
                    session, reply_message_id, utcnow()
                ),
            )
            return await self._carry_out(plan)

    async def _scheduled_flush(self) -> None:
        try:
            await self.flush_due()
        except asyncio.CancelledError:
            # Shutdown interrupted it: each delivery is its own transaction and the next start flushes again.
            log.info("coaching flush interrupted by shutdown")
        except Exception as exc:
            if transient_reason(exc) is None:
                raise
            log.warning("coaching flush skipped: database unavailable; the next one tries again")

    async def flush_due(self) -> int:
        """Settle unfinished DMs, plan replies left pending, then send what the rate limits allow. Returns DMs attempted.

        Only for the guilds this process's shards own (bot.sharding): each guild's flush runs in one process.
        """
        await self.settle_unfinished()
        attempted = 0
        owned = self.bot.guild_ownership
        pending = await self.database.run(
            "coaching flush: list replies left pending",
            lambda session: coaching_delivery.replies_left_pending(session, utcnow(), owned),
        )
        for guild_id, responder_id, reply_message_id in pending:
            try:
                attempted += await self.coach_new_reply(guild_id, responder_id, reply_message_id)
            except Exception:
                log.exception("coaching flush failed for reply %s", reply_message_id)
        waiting = await self.database.run(
            "coaching flush: list waiting responders",
            lambda session: coaching_delivery.responders_with_queued_replies(session, owned),
        )
        for guild_id, responder_id in waiting:
            try:
                attempted += await self.deliver_due(guild_id, responder_id)
            except Exception:
                log.exception("coaching flush failed for member %s in guild %s", responder_id, guild_id)
        return attempted

    async def deliver_due(self, guild_id: int, responder_id: int) -> int:
        async with self._lock(guild_id, responder_id):
            plan = await self.database.run(
                f"plan coaching for member {responder_id} in guild {guild_id}",
                lambda session: coaching_delivery.plan_and_claim_due(
                    session, guild_id, responder_id, utcnow()
                ),
            )
            return await self._carry_out(plan)

    async def _carry_out(self, plan: DeliveryPlan) -> int:
        """Send the DM its plan claimed, then record it (phase two). The caller holds the responder's lock."""
        if not plan.sends_something:
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
        try:
            await self.database.run(
                f"record coaching delivery {plan.delivery_id} to member {plan.responder_id}",
                lambda session: coaching_delivery.record_delivery(
                    session, plan, status, utcnow(), dm_message_id=dm_id
                ),
            )
        except StaleDataError:
            # The claimed delivery row vanished between reading and updating it: only erasure (forget-me,
            # member leave) deletes those, and it means "keep nothing about this member".
            log.info(
                "coaching delivery %s to member %s was erased before it was recorded; nothing kept",
                plan.delivery_id,
                plan.responder_id,
            )
        except Exception as exc:
            if transient_reason(exc) is None:
                raise
            # Still "sending": never re-sent blindly; the flush looks for it in the DMs (settle_unfinished).
            log.warning(
                "coaching delivery %s to member %s: %s but not recorded; the flush settles it",
                plan.delivery_id,
                plan.responder_id,
                status,
            )
        return 1

    async def settle_unfinished(self) -> int:
        """Deliveries left "sending" (a crash, or the database gone, around a send): found, re-queued or let go.

        Each is looked up in the member's DM history under that member's lock, so a DM being sent right now by
        this process is never mistaken for an unfinished one. Returns how many were settled.
        """
        unfinished = await self.database.run(
            "coaching flush: list unfinished deliveries",
            lambda session: coaching_delivery.unfinished_deliveries(session, self.bot.guild_ownership),
        )
        for item in unfinished:
            try:
                await self._settle(item)
            except Exception:
                log.exception(
                    "could not settle coaching delivery %s; the next flush tries again", item.delivery_id
                )
        return len(unfinished)

    async def _settle(self, item: UnfinishedDelivery) -> None:
        async with self._lock(item.guild_id, item.responder_id):
            if item.kind is PlanKind.INVITE:
                dm_id, verified_absent = None, False  # an invitation is never re-sent: no need to look
            else:
                dm_id, verified_absent = await self._find_sent_note(item)
            await self.database.run(
                f"settle coaching delivery {item.delivery_id}",
                lambda session: coaching_delivery.settle_unfinished(
                    session, item.delivery_id, utcnow(), dm_message_id=dm_id, verified_absent=verified_absent
                ),
            )

    async def _find_sent_note(self, item: UnfinishedDelivery) -> tuple[int | None, bool]:
        """(the note's message id if it is in the member's DMs, whether its absence is certain)."""
        me = self.bot.user.id if self.bot.user is not None else None
        read = 0
        oldest = None
        try:
            channel = await self.bot.create_dm(discord.Object(id=item.responder_id))
            async for message in channel.history(limit=HISTORY_LOOKBACK):
                read += 1
                oldest = message.created_at
                if message.author.id == me and any(url in message.content for url in item.jump_urls):
                    return message.id, False
        except discord.HTTPException as exc:
            log.warning(
                "could not read DM history for coaching delivery %s: HTTP %s", item.delivery_id, exc.status
            )
            return None, False
        # Certain only if the whole history was read, or it was read back to before the claim.
        complete = read < HISTORY_LOOKBACK or (
            oldest is not None and oldest < item.claimed_at - HISTORY_CLOCK_MARGIN
        )
        return None, complete and bool(item.jump_urls)

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
        await self.database.run(
            f"record coaching answer of member {interaction.user.id}",
            lambda session: coaching_delivery.set_coaching_choice(
                session, guild_id, interaction.user.id, accepted, utcnow()
            ),
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
        await replies.update(interaction, content=content[:2000], view=None)
        if accepted and self.bot.guild_ownership.owns(guild_id):
            await self.deliver_due(guild_id, interaction.user.id)
        elif accepted:
            # A DM's button reaches shard 0's process. The guild's own process sends its notes (one sender
            # per guild, bot.sharding): the queued replies go out at its next flush.
            log.info("coaching answer for guild %s recorded; its shard's process sends the notes", guild_id)

    # -- commands ----------------------------------------------------------------------------------------

    async def _set_choice(self, interaction: discord.Interaction, on: bool) -> None:
        if interaction.guild is None:
            raise app_commands.NoPrivateMessage()
        guild_id, user_id = interaction.guild.id, interaction.user.id

        async def set_choice(session: AsyncSession) -> bool:
            await coaching_delivery.set_coaching_choice(session, guild_id, user_id, on, utcnow())
            return (await guild_settings.get_or_create(session, guild_id)).shadow_mode

        shadow = await self.database.run(
            f"set coaching {'on' if on else 'off'} for member {user_id}", set_choice
        )
        if on:
            text = (
                "Coaching is **on**: after you reply in a support channel I'll DM you a short private note "
                "about what your reply did well and one idea to try."
            )
            if shadow:
                text += " (This server is still trying PeerCare out in shadow mode, so notes start once it's live.)"
        else:
            text = "Coaching is **off**: I won't DM you notes about your replies. Turn it back on any time."
        await replies.answer(interaction, text, ephemeral=True)
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

    def __init__(self, bot: PeerCareBot) -> None:
        self.bot = bot

    @app_commands.command(name="me", description="Your own empathy trend over time (only you see it)")
    @command_cooldowns.per_member(command_cooldowns.CHART_COMMANDS)
    async def me(self, interaction: discord.Interaction) -> None:
        if interaction.guild is None:
            raise app_commands.NoPrivateMessage()
        await replies.defer(interaction, ephemeral=True)
        since = utcnow() - timedelta(days=TREND_DAYS)
        guild_id, user_id = interaction.guild.id, interaction.user.id

        async def read(session: AsyncSession):  # type: ignore[no-untyped-def]
            return (
                await level_trend(session, guild_id, since, responder_id=user_id),
                await consent.find(session, guild_id, user_id),
            )

        points, member = await self.bot.database.run(f"read the trend of member {user_id}", read)
        if not points:
            await replies.answer(
                interaction,
                "I haven't scored any of your replies here yet. Reply to someone in a support channel, "
                "and your trend will show up here.",
                ephemeral=True,
            )
            return
        png = await render_level_trend_async(points, f"Your empathy levels, last {TREND_DAYS} days")
        total = sum(p.replies for p in points)

        def mean(mechanism: Mechanism) -> float:
            return sum(p.level(mechanism) * p.replies for p in points) / total

        averages = " · ".join(f"{mechanism.display_name} {mean(mechanism):.1f}" for mechanism in Mechanism)
        summary = (
            f"**{total} replies** in the last {TREND_DAYS} days. Average level (0 none, 1 weak, 2 strong): "
            f"{averages}."
        )
        if member is None or member.coaching.value != "on":
            summary += "\nWant a private note after each reply? `/peercare coaching on`."
        await replies.answer(
            interaction,
            summary,
            file=discord.File(io.BytesIO(png), filename="my-empathy-trend.png"),
            ephemeral=True,
        )


async def setup(bot: PeerCareBot) -> None:
    await bot.add_cog(Coaching(bot))
    await bot.add_cog(MyProgress(bot))
