"""Check-ins, Discord side: `/peercare checkin on|off`, the scheduled DM, its buttons and its free-text answer.

Schedules come from the database at every start (``cog_load``), one APScheduler cron job per member, and
are removed in ``cog_unload``. The decisions are in ``bot.services.checkins``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime, timedelta
from typing import Literal

import discord
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from discord import app_commands
from discord.ext import commands
from sqlalchemy.ext.asyncio import AsyncSession

from bot import interaction_replies as replies
from bot.app import PeerCareBot, cog_for
from bot.buttons import RestartProofButton
from bot.command_cooldowns import Cooldown, wait_wording
from bot.db.models import CheckinCadence, CheckinSchedule, utcnow
from bot.db.session import Database, transient_reason
from bot.escalation_views import ask_first_view
from bot.services import checkins, guild_settings, safety_messages
from bot.services.checkins import AnswerOutcome, Mood
from bot.services.errors import UserFacingError
from bot.services.escalation_policy import Outcome
from bot.services.reply_scoring import has_scorable_text
from inference.errors import InferenceError
from inference.types import RiskScoreRequest

log = logging.getLogger(__name__)

DISCORD_DMS_CLOSED = 50007
# Each note is risk-scored at a priority that is never shed: a member adding a few words, then a few more, is
# welcome; a stream of notes is not (at most 30 model calls an hour from one member, not one per submit).
NOTE_COOLDOWN = Cooldown(rate=5, per_s=600.0)
# How long after start a check-in missed while the process was down is sent (the gateway connects meanwhile).
CATCH_UP_DELAY = timedelta(seconds=30)

_MOOD_BUTTONS = {
    Mood.OKAY: ("Doing okay", discord.ButtonStyle.success),
    Mood.SO_SO: ("So-so", discord.ButtonStyle.secondary),
    Mood.STRUGGLING: ("Struggling", discord.ButtonStyle.primary),
    Mood.TALK: ("I'd like to talk to someone", discord.ButtonStyle.danger),
}
_SIMPLE_REPLIES = {
    Mood.OKAY: "Glad to hear it. Thanks for checking in — see you next time.",
    Mood.SO_SO: (
        "Thanks for being honest — some days are like that. If you'd like, press **Add a few words** to say "
        "more. Take care of yourself today."
    ),
}


class CheckinMoodButton(
    RestartProofButton,
    template=r"peercare:checkin:(?P<mood>okay|so_so|struggling|talk):(?P<checkin_id>[0-9]+)",
):
    """One answer on a check-in DM; the check-in id rides in the custom id (works after restarts)."""

    def __init__(self, mood: Mood, checkin_id: int) -> None:
        super().__init__(f"peercare:checkin:{mood.value}:{checkin_id}", *_MOOD_BUTTONS[mood])
        self.mood = mood
        self.checkin_id = checkin_id

    @classmethod
    def from_match(cls, match: re.Match[str]) -> CheckinMoodButton:
        return cls(Mood(match["mood"]), int(match["checkin_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        cog = await cog_for(interaction, Checkins)
        if cog is not None:
            await cog.mood_pressed(interaction, self.checkin_id, self.mood)


@replies.opens_modal
class CheckinNoteButton(RestartProofButton, template=r"peercare:checkin:note:(?P<checkin_id>[0-9]+)"):
    """Opens a short free-text form for the check-in."""

    def __init__(self, checkin_id: int) -> None:
        super().__init__(f"peercare:checkin:note:{checkin_id}", "Add a few words")
        self.checkin_id = checkin_id

    @classmethod
    def from_match(cls, match: re.Match[str]) -> CheckinNoteButton:
        return cls(int(match["checkin_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await replies.open_modal(interaction, CheckinNoteModal(self.checkin_id))


class CheckinNoteModal(discord.ui.Modal, title="Your check-in"):
    note: discord.ui.TextInput = discord.ui.TextInput(
        label="Anything you'd like to add? (optional)",
        custom_id="note",
        style=discord.TextStyle.paragraph,
        max_length=checkins.ANSWER_CHARS,
        required=False,
    )

    def __init__(self, checkin_id: int) -> None:
        # An open form lives in memory only; after an hour (or a restart) the member presses the button again.
        super().__init__(custom_id=f"peercare:checkin:form:{checkin_id}", timeout=3600)
        self.checkin_id = checkin_id

    async def on_submit(self, interaction: discord.Interaction) -> None:
        cog = await cog_for(interaction, Checkins)
        if cog is not None:
            await cog.note_submitted(interaction, self.checkin_id, self.note.value or "")


def checkin_view(checkin_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for mood in Mood:
        view.add_item(CheckinMoodButton(mood, checkin_id))
    view.add_item(CheckinNoteButton(checkin_id))
    return view


def checkin_message(due: checkins.CheckinDue, guild_name: str | None) -> str:
    where = f" from **{guild_name}**" if guild_name else ""
    text = (
        f"Hi — this is your {due.cadence.value} PeerCare check-in{where}. How are you doing today? "
        "Pick whatever fits; there is no wrong answer."
    )
    if due.gentle_note:
        text += (
            "\n\nNo pressure if you'd rather skip — if I don't hear back this time, I'll pause check-ins, "
            "and `/peercare checkin on` starts them again whenever you like."
        )
    return text


class MemberCooldowns:
    """Per-member buckets for something that is not a slash command (a form).

    The same discord.py buckets, and the same pruning of idle ones, as ``command_cooldowns.per_member`` gets
    from ``app_commands.checks.cooldown`` for commands; kept in memory, so a restart forgets them.
    """

    def __init__(self, cooldown: Cooldown) -> None:
        self.cooldown = cooldown
        self._buckets: dict[int, app_commands.Cooldown] = {}

    def retry_after(self, interaction: discord.Interaction) -> float | None:
        """Count one use; None when allowed, else the seconds until the member may try again."""
        current = interaction.created_at.timestamp()
        for member_id in [k for k, b in self._buckets.items() if current > b._last + b.per]:
            del self._buckets[member_id]
        bucket = self._buckets.setdefault(
            interaction.user.id, app_commands.Cooldown(self.cooldown.rate, self.cooldown.per_s)
        )
        return bucket.update_rate_limit(current)


def _note_cooldown_message(retry_after: float, crisis_resources: str) -> str:
    return (
        "Thank you for all you've shared. I can take another note in "
        f"{wait_wording(retry_after)}; this one was not saved. If things feel heavy right now, please reach "
        "out to someone you trust, or:\n\n" + crisis_resources
    )


class Checkins(
    commands.GroupCog, group_name="checkin", group_description="Opt-in check-ins: a private how-are-you DM"
):
    def __init__(self, bot: PeerCareBot) -> None:
        self.bot = bot
        self._note_cooldowns = MemberCooldowns(NOTE_COOLDOWN)
        super().__init__()

    @property
    def database(self) -> Database:
        return self.bot.database

    @property
    def scheduler(self) -> AsyncIOScheduler:
        return self.bot.scheduler

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(CheckinMoodButton, CheckinNoteButton)
        # Only the guilds this process's shards receive (bot.sharding): each check-in fires in one process.
        schedules = await self.database.run(
            "restore check-in schedules",
            lambda session: checkins.active_schedules(session, self.bot.guild_ownership),
        )
        for schedule in schedules:
            self.schedule_job(schedule)
        missed = self._catch_up(schedules)
        log.info(
            "restored %d check-in schedules (%d missed while down, sent shortly)", len(schedules), missed
        )

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(CheckinMoodButton, CheckinNoteButton)
        for job in self.scheduler.get_jobs():
            if job.id.startswith(checkins.JOB_PREFIX):
                job.remove()

    # -- scheduling ----------------------------------------------------------------------------------------

    def schedule_job(self, schedule: CheckinSchedule) -> None:
        spec = checkins.cron_spec(schedule)
        trigger = CronTrigger(
            hour=spec.hour, minute=spec.minute, day_of_week=spec.day_of_week, timezone=spec.timezone
        )
        self.scheduler.add_job(
            self.send_checkin,
            trigger,
            args=[schedule.id],
            id=checkins.job_id(schedule.id),
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=int(checkins.MISSED_SLOT_GRACE.total_seconds()),
        )

    def _catch_up(self, schedules: list[CheckinSchedule]) -> int:
        """Send, shortly after start, each check-in that fell due while this process was down (within the grace
        of ``checkins.missed_slot``); returns how many. Delayed so the gateway is connected when it goes out."""
        now = utcnow()
        missed = [schedule for schedule in schedules if checkins.missed_slot(schedule, now) is not None]
        for schedule in missed:
            self.scheduler.add_job(
                self.send_checkin,
                "date",
                run_date=now + CATCH_UP_DELAY,
                args=[schedule.id],
                id=checkins.catch_up_job_id(schedule.id),
                replace_existing=True,
            )
        return len(missed)

    def unschedule(self, schedule_id: int) -> None:
        for job_id in (checkins.job_id(schedule_id), checkins.catch_up_job_id(schedule_id)):
            job = self.scheduler.get_job(job_id)
            if job is not None:
                job.remove()

    async def send_checkin(self, schedule_id: int, now: datetime | None = None) -> bool:
        """The job: send the check-in that is due (if any). Returns True when a DM went out.

        The check-in row is committed before the send (``start_checkin`` is the claim), so a crash or a
        lasting database error after it never leads to a second DM for the same slot.
        """
        try:
            due = await self.database.run(
                f"open check-in for schedule {schedule_id}",
                lambda session: checkins.start_checkin(session, schedule_id, now or utcnow()),
            )
            if due is None:
                if not await self.database.run(
                    f"check schedule {schedule_id}", lambda session: checkins.is_active(session, schedule_id)
                ):
                    self.unschedule(schedule_id)  # turned off, paused or deleted: stop firing
                return False
            guild = self.bot.get_guild(due.guild_id)
            try:
                channel = await self.bot.create_dm(discord.Object(id=due.user_id))
                message = await channel.send(
                    checkin_message(due, guild.name if guild else None),
                    view=checkin_view(due.checkin_id),
                    allowed_mentions=discord.AllowedMentions.none(),
                )
            except discord.Forbidden as exc:
                if exc.code != DISCORD_DMS_CLOSED:
                    raise
                await self.database.run(
                    f"stop check-ins for schedule {schedule_id}: DMs closed",
                    lambda session: checkins.stop_for_closed_dms(session, due.checkin_id),
                )
                self.unschedule(schedule_id)
                log.info("check-ins stopped for schedule %s: DMs closed", schedule_id)
                return False
            try:
                await self.database.run(
                    f"record check-in {due.checkin_id} sent",
                    lambda session: checkins.mark_sent(session, due.checkin_id, message.id),
                )
            except Exception as exc:
                if transient_reason(exc) is None:
                    raise
                # Sent; the buttons carry the check-in id, so answers still work without the message id.
                log.warning("check-in %s sent but its message id was not recorded", due.checkin_id)
            return True
        except asyncio.CancelledError:
            log.info("check-in for schedule %s interrupted by shutdown", schedule_id)
            return False
        except Exception as exc:
            if transient_reason(exc) is not None:  # Database.run has said why; the next slot tries again
                log.warning("check-in for schedule %s skipped: database unavailable", schedule_id)
                return False
            log.exception("check-in for schedule %s failed", schedule_id)
            return False

    # -- commands ------------------------------------------------------------------------------------------

    @app_commands.command(name="on", description="Get a private check-in DM on a schedule you choose")
    @app_commands.describe(
        cadence="daily or weekly (weekly: on today's weekday)",
        time="your local time, 24-hour HH:MM, e.g. 09:30",
        timezone="your time zone as Area/City, e.g. Europe/Berlin",
    )
    @app_commands.guild_only()
    async def checkin_on(
        self, interaction: discord.Interaction, cadence: Literal["daily", "weekly"], time: str, timezone: str
    ) -> None:
        guild_id, user_id = interaction.guild_id or 0, interaction.user.id

        async def enable(session: AsyncSession) -> tuple[CheckinSchedule, bool]:
            schedule = await checkins.enable(
                session, guild_id, user_id, CheckinCadence(cadence), time, timezone, utcnow()
            )
            return schedule, (await guild_settings.get_or_create(session, guild_id)).shadow_mode

        schedule, shadow = await self.database.run(f"turn check-ins on for member {user_id}", enable)
        self.schedule_job(schedule)
        upcoming = checkins.next_time(schedule, utcnow())
        when = "every day" if schedule.cadence is CheckinCadence.DAILY else f"every {upcoming:%A}"
        text = (
            f"Check-ins are on: {when} at {schedule.time_of_day} ({schedule.timezone}). The next one is "
            f"{upcoming:%A %d %B at %H:%M}. I'll send it as a private DM — keep DMs from this server open. "
            "`/peercare checkin off` stops them any time."
        )
        if shadow:
            text += "\n\nNote: PeerCare is still being tried out on this server, so check-ins start once the moderators turn it on."
        await replies.answer(interaction, text, ephemeral=True)

    @app_commands.command(name="off", description="Stop your check-in DMs")
    @app_commands.guild_only()
    async def checkin_off(self, interaction: discord.Interaction) -> None:
        guild_id, user_id = interaction.guild_id or 0, interaction.user.id
        schedule = await self.database.run(
            f"turn check-ins off for member {user_id}",
            lambda session: checkins.disable(session, guild_id, user_id),
        )
        if schedule is None:
            await replies.answer(interaction, "You have no check-ins turned on.", ephemeral=True)
            return
        self.unschedule(schedule.id)
        await replies.answer(
            interaction,
            "Check-ins are off. `/peercare checkin on` turns them back on whenever you like.",
            ephemeral=True,
        )

    # -- answers -------------------------------------------------------------------------------------------

    async def mood_pressed(self, interaction: discord.Interaction, checkin_id: int, mood: Mood) -> None:
        user_id = interaction.user.id
        retention_days = self.bot.settings.message_retention_days
        try:
            result = await self.database.run(
                f"record the answer to check-in {checkin_id}",
                lambda session: checkins.record_mood(
                    session, checkin_id, user_id, mood, utcnow(), retention_days=retention_days
                ),
            )
        except UserFacingError as exc:
            await replies.answer(interaction, str(exc))
            return
        if mood in _SIMPLE_REPLIES:
            await replies.answer(interaction, _SIMPLE_REPLIES[mood])
            return
        await self._answer_escalation(interaction, result, talk=mood is Mood.TALK)

    async def note_submitted(self, interaction: discord.Interaction, checkin_id: int, text: str) -> None:
        if not has_scorable_text(text):  # blank, or only invisible characters the models refuse
            await replies.answer(interaction, "Thanks — nothing was saved since the box was empty.")
            return
        user_id = interaction.user.id
        # Owner and recency first, then the member's rate limit: the risk model only reads a note that passed.
        try:
            target = await self.database.run(
                f"check the note for check-in {checkin_id}",
                lambda session: checkins.note_target(session, checkin_id, user_id, utcnow()),
            )
        except UserFacingError as exc:
            await replies.answer(interaction, str(exc))
            return
        retry_after = self._note_cooldowns.retry_after(interaction)
        if retry_after is not None:
            log.info("check-in note from member %s not taken: rate limit", user_id)
            await replies.answer(interaction, _note_cooldown_message(retry_after, target.crisis_resources))
            return
        await replies.defer(interaction, ephemeral=False)
        try:
            scored = await self.bot.inference.score_risk(
                RiskScoreRequest(message_id=interaction.id, text=text)
            )
        except InferenceError as exc:
            log.error("could not risk-score check-in %s: %s", checkin_id, type(exc).__name__)
            await replies.answer(
                interaction,
                "Thank you for sharing. If things feel too heavy, please reach out to someone you trust "
                "or a crisis line.",
            )
            return
        defaults = self.bot.risk_defaults.value
        retention_days = self.bot.settings.message_retention_days
        try:
            result = await self.database.run(
                f"record the note for check-in {checkin_id}",
                lambda session: checkins.record_text(
                    session,
                    checkin_id,
                    user_id,
                    text,
                    scored.risk,
                    utcnow(),
                    defaults=defaults,
                    retention_days=retention_days,
                ),
            )
        except UserFacingError as exc:
            await replies.answer(interaction, str(exc))
            return
        if result.outcome is Outcome.NOTHING:
            await replies.answer(interaction, "Thank you for sharing that with me. Take care of yourself.")
            return
        await self._answer_escalation(interaction, result, talk=False)

    async def _send(
        self, interaction: discord.Interaction, content: str, view: discord.ui.View | None = None
    ) -> None:
        await replies.answer(interaction, content, view=view if view is not None else discord.utils.MISSING)

    async def _answer_escalation(
        self, interaction: discord.Interaction, result: AnswerOutcome, *, talk: bool
    ) -> None:
        if result.outcome is Outcome.ALERT_MODERATORS and result.escalation_id is not None:
            await self._send(interaction, safety_messages.moderator_on_the_way())
            await self.bot.deliver_cases([result.escalation_id])
            return
        if result.outcome is Outcome.ASK_MEMBER and result.escalation_id is not None:
            question = (
                "Thank you for telling me. **Would you like one of the server's moderators to reach out to you?** "
                "Nothing has been shared with them yet.\n\n" + result.crisis_resources
            )
            await self._send(interaction, question, ask_first_view(result.escalation_id))
            return
        if talk:
            await self._send(
                interaction, safety_messages.talk_request_without_consent(result.crisis_resources)
            )
            return
        await self._send(
            interaction,
            "Thank you for telling me — that sounds hard, and you don't have to go through it alone.\n\n"
            + result.crisis_resources,
        )


async def setup(bot: PeerCareBot) -> None:
    await bot.add_cog(Checkins(bot))
