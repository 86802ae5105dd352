"""Check-ins: a member's own daily or weekly "how are you doing?", its schedule, its answers and what they lead to.

The schedule lives in ``checkin_schedules`` and is turned into an APScheduler cron job at every start, so it
survives restarts without a job store. Times are the member's wall-clock time in their IANA time zone.
A member who misses a check-in gets one gentle line in the next one; after a second miss in a row check-ins
pause (the member restarts them with `/peercare checkin on`) — never a string of reminders.
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import (
    Checkin,
    CheckinCadence,
    CheckinSchedule,
    EscalationConsent,
    EscalationState,
    RiskAssessment,
)
from bot.services import (
    audit,
    consent,
    escalation_cases,
    escalation_delivery,
    escalation_policy,
    guild_settings,
)
from bot.services.errors import UserFacingError
from bot.services.escalation_policy import EscalationKind, Outcome
from bot.services.risk_tier import decide_tier
from bot.services.seeker_risk import excerpt
from bot.sharding import GuildOwnership
from inference.types import RiskResult, RiskThresholds, RiskTier

log = logging.getLogger(__name__)

JOB_PREFIX = "checkin:"
# Consecutive unanswered check-ins after which they pause (the second one carried the one gentle note).
PAUSE_AFTER_MISSED = 2
ANSWER_CHARS = 1000
# A check-in job may wake this much before its scheduled minute and still count for that slot.
SLOT_EARLY_GRACE = timedelta(minutes=5)
# A check-in is still sent this long after its time: by a job that wakes late (its misfire_grace_time) or,
# after the process was down, by a catch-up at start (missed_slot). Later, the next slot is the next one.
MISSED_SLOT_GRACE = timedelta(hours=1)
SELF_REPORTED = "self_reported"  # the tier of an escalation the member asked for themselves
# A note is accepted for this long after its check-in was sent (see ``note_target``).
NOTE_WINDOW = timedelta(hours=48)
_TIME = re.compile(r"^\s*([01]?\d|2[0-3])[:.h]([0-5]\d)\s*$")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Mood(str, enum.Enum):
    OKAY = "okay"
    SO_SO = "so_so"
    STRUGGLING = "struggling"
    TALK = "talk"


def job_id(schedule_id: int) -> str:
    return f"{JOB_PREFIX}{schedule_id}"


def catch_up_job_id(schedule_id: int) -> str:
    """The one-off job that sends a check-in missed while the process was down (``missed_slot``)."""
    return f"{JOB_PREFIX}catch-up:{schedule_id}"


def parse_time(text: str) -> tuple[int, int]:
    """``HH:MM`` on a 24-hour clock (``9:05``, ``21:30``); a clear error otherwise."""
    match = _TIME.match(text or "")
    if match is None:
        raise UserFacingError(
            f"“{(text or '')[:20]}” is not a time of day I understand: use the 24-hour HH:MM form, like 09:30 or 21:00."
        )
    return int(match.group(1)), int(match.group(2))


def parse_timezone(text: str) -> ZoneInfo:
    """An IANA time zone name such as ``Europe/Berlin``; a clear error for anything else."""
    name = (text or "").strip()
    hint = "Use an Area/City name like Europe/Berlin, America/New_York or Asia/Tokyo (or UTC)."
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        raise UserFacingError(f"“{name[:40]}” is not a time zone. {hint}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe" is a folder of zones, not one
        raise UserFacingError(f"I don't know the time zone “{name[:40]}”. {hint}") from None


@dataclass(frozen=True, slots=True)
class CronSpec:
    """What APScheduler's cron trigger needs: wall-clock fields in the member's time zone."""

    hour: int
    minute: int
    day_of_week: str | None
    timezone: ZoneInfo


def cron_spec(schedule: CheckinSchedule) -> CronSpec:
    hour, minute = parse_time(schedule.time_of_day)
    weekly = schedule.cadence is CheckinCadence.WEEKLY and schedule.weekday is not None
    return CronSpec(
        hour=hour,
        minute=minute,
        day_of_week=_WEEKDAYS[schedule.weekday] if weekly else None,  # type: ignore[index]
        timezone=ZoneInfo(schedule.timezone),
    )


def next_time(schedule: CheckinSchedule, now: datetime) -> datetime:
    """The next check-in after ``now``, in the member's time zone (for the confirmation message)."""
    spec = cron_spec(schedule)
    local = now.astimezone(spec.timezone)
    candidate = local.replace(hour=spec.hour, minute=spec.minute, second=0, microsecond=0)
    step = timedelta(days=1)
    while candidate <= local or (
        spec.day_of_week is not None and _WEEKDAYS[candidate.weekday()] != spec.day_of_week
    ):
        candidate = (candidate + step).replace(hour=spec.hour, minute=spec.minute)
    return candidate


async def enable(
    session: AsyncSession,
    guild_id: int,
    user_id: int,
    cadence: CheckinCadence,
    time_text: str,
    timezone_text: str,
    now: datetime,
) -> CheckinSchedule:
    """Turn check-ins on (or change them). Weekly check-ins fall on today's weekday in the member's zone."""
    hour, minute = parse_time(time_text)
    zone = parse_timezone(timezone_text)
    schedule = await find_schedule(session, guild_id, user_id)
    if schedule is None:
        schedule = CheckinSchedule(guild_id=guild_id, user_id=user_id)
        session.add(schedule)
    schedule.cadence = cadence
    schedule.time_of_day = f"{hour:02d}:{minute:02d}"
    schedule.timezone = zone.key
    schedule.weekday = now.astimezone(zone).weekday() if cadence is CheckinCadence.WEEKLY else None
    schedule.active = True
    schedule.missed_count = 0
    await session.flush()
    member = await consent.get_or_create(session, guild_id, user_id)
    member.dms_closed_at = None  # the member just asked for DMs: try again
    audit.record_about(
        session,
        "checkin.enabled",
        schedule,
        subject_type="checkin_schedule",
        actor_id=user_id,
        cadence=cadence.value,
    )
    return schedule


async def disable(session: AsyncSession, guild_id: int, user_id: int) -> CheckinSchedule | None:
    schedule = await find_schedule(session, guild_id, user_id)
    if schedule is None or not schedule.active:
        return None
    schedule.active = False
    audit.record_about(
        session, "checkin.disabled", schedule, subject_type="checkin_schedule", actor_id=user_id
    )
    return schedule


async def find_schedule(session: AsyncSession, guild_id: int, user_id: int) -> CheckinSchedule | None:
    return await session.scalar(
        select(CheckinSchedule).where(
            CheckinSchedule.guild_id == guild_id, CheckinSchedule.user_id == user_id
        )
    )


async def is_active(session: AsyncSession, schedule_id: int) -> bool:
    schedule = await session.get(CheckinSchedule, schedule_id)
    return schedule is not None and schedule.active


async def active_schedules(
    session: AsyncSession,
    owned: GuildOwnership = GuildOwnership.everything(),  # noqa: B008  (frozen, never mutated)
) -> list[CheckinSchedule]:
    """Active schedules in the guilds this process owns (with sharding, another process fires the rest)."""
    return list(
        await session.scalars(
            select(CheckinSchedule).where(
                CheckinSchedule.active.is_(True), owned.where(CheckinSchedule.guild_id)
            )
        )
    )


# -- sending ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckinDue:
    checkin_id: int
    schedule_id: int
    guild_id: int
    user_id: int
    cadence: CheckinCadence
    # The previous check-in went unanswered: say once, gently, that skipping is fine.
    gentle_note: bool


def current_slot(schedule: CheckinSchedule, now: datetime) -> datetime:
    """The scheduled time a run at ``now`` belongs to: the latest one at or before it.

    A few minutes' grace lets a job that wakes a little early still belong to its own slot.
    """
    period = timedelta(days=7) if cron_spec(schedule).day_of_week is not None else timedelta(days=1)
    return next_time(schedule, now + SLOT_EARLY_GRACE - period)


def missed_slot(
    schedule: CheckinSchedule, now: datetime, grace: timedelta = MISSED_SLOT_GRACE
) -> datetime | None:
    """The slot a restart may have skipped: the latest scheduled time at most ``grace`` before ``now`` and not
    before the schedule was made, or None.

    Why: the scheduler keeps its jobs in memory, so a run that fell due while this process was down (a crash, a
    deploy, a killed shard process) is not run late when the jobs are rebuilt; ``misfire_grace_time`` only covers
    a process that was up but woke late. ``start_checkin`` still sends at most one check-in per slot.
    """
    slot = current_slot(schedule, now)
    if slot > now or now - slot > grace or slot < schedule.created_at:
        return None
    return slot


async def start_checkin(session: AsyncSession, schedule_id: int, now: datetime) -> CheckinDue | None:
    """Open the check-in that is due now, or None when nothing should be sent (off, paused, shadow mode).

    The ``checkins`` row is the claim: written (and committed by the caller) before the DM is sent, so a
    second run for the same slot — a restart in the same minute, a job fired twice, a transaction re-run
    after its commit may have landed — finds it and sends nothing. At most one check-in per slot; a crash
    after the claim and before the send costs that slot's check-in, never a duplicate.
    """
    schedule = await session.get(CheckinSchedule, schedule_id)
    if schedule is None or not schedule.active:
        return None
    settings = await guild_settings.get_or_create(session, schedule.guild_id)
    if settings.left_at is not None or settings.shadow_mode:
        return None
    previous = await session.scalar(
        select(Checkin).where(Checkin.schedule_id == schedule_id).order_by(Checkin.sent_at.desc()).limit(1)
    )
    if previous is not None and previous.sent_at >= current_slot(schedule, now):
        log.info("check-in for schedule %s already opened for this slot; not sent again", schedule_id)
        return None
    # Only a check-in that reached the member can be missed (not one lost to a crash or a Discord error).
    if previous is not None and previous.answered_at is None and previous.dm_message_id is not None:
        schedule.missed_count += 1
    if schedule.missed_count >= PAUSE_AFTER_MISSED:
        schedule.active = False
        audit.record_about(
            session,
            "checkin.paused_after_missed",
            schedule,
            subject_type="checkin_schedule",
            missed=schedule.missed_count,
        )
        return None
    checkin = Checkin(
        schedule_id=schedule.id, guild_id=schedule.guild_id, user_id=schedule.user_id, sent_at=now
    )
    session.add(checkin)
    schedule.last_sent_at = now
    await session.flush()
    return CheckinDue(
        checkin_id=checkin.id,
        schedule_id=schedule.id,
        guild_id=schedule.guild_id,
        user_id=schedule.user_id,
        cadence=schedule.cadence,
        gentle_note=schedule.missed_count == 1,
    )


async def mark_sent(session: AsyncSession, checkin_id: int, dm_message_id: int) -> None:
    checkin = await session.get(Checkin, checkin_id)
    if checkin is not None:
        checkin.dm_message_id = dm_message_id


async def stop_for_closed_dms(session: AsyncSession, checkin_id: int) -> None:
    """Discord said the member's DMs are closed: stop check-ins (they restart them with the command)."""
    checkin = await session.get(Checkin, checkin_id)
    if checkin is None:
        return
    schedule = await session.get(CheckinSchedule, checkin.schedule_id)
    await session.delete(checkin)  # never delivered: not a missed check-in
    if schedule is not None:
        schedule.active = False
        audit.record_about(session, "checkin.stopped_dms_closed", schedule, subject_type="checkin_schedule")
        await consent.mark_dms_closed(session, schedule.guild_id, schedule.user_id)


# -- answers ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnswerOutcome:
    """What an answer leads to: ``outcome`` is the escalation path (NOTHING for an ordinary answer)."""

    guild_id: int
    outcome: Outcome
    escalation_id: int | None
    crisis_resources: str
    tier: RiskTier | None = None


async def _own_checkin(session: AsyncSession, checkin_id: int, user_id: int) -> Checkin:
    checkin = await session.get(Checkin, checkin_id)
    if checkin is None or checkin.user_id != user_id:
        raise UserFacingError("This check-in is no longer available.")
    return checkin


@dataclass(frozen=True, slots=True)
class NoteTarget:
    """A check-in a note may be added to: checked before the note is risk-scored."""

    guild_id: int
    crisis_resources: str


def _note_window_text() -> str:
    return f"{int(NOTE_WINDOW.total_seconds() // 3600)} hours"


async def _checkin_for_note(session: AsyncSession, checkin_id: int, user_id: int, now: datetime) -> Checkin:
    checkin = await _own_checkin(session, checkin_id, user_id)
    if now - checkin.sent_at > NOTE_WINDOW:
        settings = await guild_settings.get_or_create(session, checkin.guild_id)
        raise UserFacingError(
            f"This check-in is more than {_note_window_text()} old, so I can't add a note to it, and nothing "
            "was saved. Your next check-in will have room for one. If something is weighing on you right "
            "now, these may help:\n\n" + guild_settings.crisis_resources_text(settings)
        )
    return checkin


async def note_target(session: AsyncSession, checkin_id: int, user_id: int, now: datetime) -> NoteTarget:
    """Whether a note may be added to this check-in, asked before the risk model reads it.

    Every note is risk-scored at a priority that is never shed, so the cheap checks come first: only the
    member the check-in was sent to may add one (a forged form for someone else's check-in costs a database
    read, not a model call), and only within ``NOTE_WINDOW`` of the check-in. A check-in asks about that
    day; two days on, a few words belong to the next check-in, and an old DM's button is not an open door
    to the model. ``record_text`` checks both again in the unit of work that stores the note.
    """
    checkin = await _checkin_for_note(session, checkin_id, user_id, now)
    settings = await guild_settings.get_or_create(session, checkin.guild_id)
    return NoteTarget(checkin.guild_id, guild_settings.crisis_resources_text(settings))


async def record_mood(
    session: AsyncSession, checkin_id: int, user_id: int, mood: Mood, now: datetime, *, retention_days: int
) -> AnswerOutcome:
    """Store a button answer; "struggling" and "talk to someone" open an escalation per consent."""
    checkin = await _own_checkin(session, checkin_id, user_id)
    checkin.mood = mood.value
    checkin.answered_at = now
    schedule = await session.get(CheckinSchedule, checkin.schedule_id)
    if schedule is not None:
        schedule.missed_count = 0
    audit.record_about(session, "checkin.answered", checkin, subject_type="checkin", mood=mood.value)
    if mood is Mood.STRUGGLING:
        return await _escalate(
            session, checkin, EscalationKind.CHECKIN, ["said they are struggling"], None, now, retention_days
        )
    if mood is Mood.TALK:
        return await _escalate(
            session,
            checkin,
            EscalationKind.TALK_REQUEST,
            ["asked to talk to someone"],
            None,
            now,
            retention_days,
        )
    settings = await guild_settings.get_or_create(session, checkin.guild_id)
    return AnswerOutcome(
        checkin.guild_id, Outcome.NOTHING, None, guild_settings.crisis_resources_text(settings)
    )


async def record_text(
    session: AsyncSession,
    checkin_id: int,
    user_id: int,
    text: str,
    risk: RiskResult,
    now: datetime,
    *,
    defaults: RiskThresholds | None,
    retention_days: int,
) -> AnswerOutcome:
    """Store a free-text answer (until retention ends) and its risk; a high tier escalates per consent."""
    checkin = await _checkin_for_note(session, checkin_id, user_id, now)
    settings = await guild_settings.get_or_create(session, checkin.guild_id)
    decision = decide_tier(risk, settings.risk_thresholds, defaults)
    checkin.answer_text = text[:ANSWER_CHARS] if retention_days > 0 else None
    checkin.text_expires_at = now + timedelta(days=retention_days) if retention_days > 0 else None
    checkin.answered_at = checkin.answered_at or now
    checkin.risk_tier = decision.tier.value
    schedule = await session.get(CheckinSchedule, checkin.schedule_id)
    if schedule is not None:
        schedule.missed_count = 0
    assessment = await session.scalar(
        select(RiskAssessment).where(
            RiskAssessment.source == "checkin", RiskAssessment.message_id == checkin.id
        )
    )
    if assessment is None:
        assessment = RiskAssessment(
            guild_id=checkin.guild_id, message_id=checkin.id, author_id=user_id, source="checkin"
        )
        session.add(assessment)
    assessment.tier = decision.tier.value
    assessment.probabilities = dict(risk.probabilities)
    assessment.triggered_labels = list(decision.labels)
    assessment.phrase_matches = list(risk.phrase_matches)
    assessment.scored_at = now
    if decision.tier is not RiskTier.HIGH:
        return AnswerOutcome(
            checkin.guild_id,
            Outcome.NOTHING,
            None,
            guild_settings.crisis_resources_text(settings),
            decision.tier,
        )
    labels = escalation_policy.main_labels(decision.labels, risk.phrase_matches)
    result = await _escalate(
        session, checkin, EscalationKind.CHECKIN, labels, text, now, retention_days, tier=RiskTier.HIGH
    )
    return AnswerOutcome(
        result.guild_id, result.outcome, result.escalation_id, result.crisis_resources, decision.tier
    )


async def _escalate(
    session: AsyncSession,
    checkin: Checkin,
    kind: EscalationKind,
    labels: list[str],
    excerpt_text: str | None,
    now: datetime,
    retention_days: int,
    *,
    tier: RiskTier | None = None,
) -> AnswerOutcome:
    settings = await guild_settings.get_or_create(session, checkin.guild_id)
    resources = guild_settings.crisis_resources_text(settings)
    member = await consent.find(session, checkin.guild_id, checkin.user_id)
    choice = consent.escalation_consent(settings, member)
    outcome = escalation_policy.decide_outcome(RiskTier.HIGH, choice, shadow_mode=settings.shadow_mode)
    if outcome is Outcome.SHADOW:
        return AnswerOutcome(checkin.guild_id, outcome, None, resources)
    row, _created = await escalation_cases.open_escalation(
        session,
        guild_id=checkin.guild_id,
        channel_id=None,
        message_id=checkin.id,
        member_id=checkin.user_id,
        kind=kind,
        tier=tier or RiskTier.HIGH,
        labels=labels,
        excerpt=escalation_excerpt(excerpt_text),
        consent_choice=choice,
        now=now,
        retention_days=retention_days,
    )
    if tier is None:
        row.tier = SELF_REPORTED
    if choice is EscalationConsent.NO and row.state is EscalationState.PENDING:
        # The answer to the member is the interaction reply itself: resources, nobody else told.
        await escalation_delivery.mark_member_supported(session, row.id)
    elif choice is EscalationConsent.ASK_FIRST and row.state is EscalationState.PENDING:
        # The member is asked right there, in the reply to their button press.
        await escalation_delivery.mark_member_asked(session, row.id)
    return AnswerOutcome(checkin.guild_id, outcome, row.id, resources)


def escalation_excerpt(text: str | None) -> str | None:
    return excerpt(text) if text else None
