"""Check-in service: clear errors for bad input, schedules that rebuild, answers that escalate per consent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.db.models import (
    CheckinCadence,
    CheckinSchedule,
    Escalation,
    EscalationConsent,
    EscalationState,
    MemberConsent,
    RiskAssessment,
)
from bot.db.session import Database
from bot.services import checkins, consent, guild_settings
from bot.services.checkins import Mood
from bot.services.errors import UserFacingError
from bot.services.escalation_policy import Outcome
from inference.types import RiskResult, RiskTier

# A faster `database` fixture (a copy of one migrated file) for these modules.
from tests.bot.services.safety_fixtures import migrated_template, safety_database  # noqa: F401

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday
GUILD, MEMBER, MODERATOR = 10, 30, 40


async def _live_guild(database: Database, default: EscalationConsent = EscalationConsent.YES) -> None:
    async with database.session() as session:
        await guild_settings.update(
            session,
            GUILD,
            MODERATOR,
            shadow_mode=False,
            default_escalation_consent=default,
            alert_channel_id=5,
        )


async def _enable(
    database: Database, cadence=CheckinCadence.DAILY, time="09:30", zone="Europe/Berlin"
) -> int:
    async with database.session() as session:
        schedule = await checkins.enable(session, GUILD, MEMBER, cadence, time, zone, NOW)
        return schedule.id


async def _start(database: Database, schedule_id: int, now: datetime = NOW, *, delivered: bool = True):
    """Open the check-in due at ``now`` and (``delivered``) record its DM as sent, as the cog does."""
    async with database.session() as session:
        due = await checkins.start_checkin(session, schedule_id, now)
    if due is not None and delivered:
        async with database.session() as session:
            await checkins.mark_sent(session, due.checkin_id, 7000 + due.checkin_id)
    return due


@pytest.mark.parametrize("text", ["25:00", "9", "nine", "12:60", "", "09:30pm"])
def test_bad_time_gets_a_clear_error(text: str) -> None:
    with pytest.raises(UserFacingError, match="HH:MM"):
        checkins.parse_time(text)


def test_time_accepts_single_digit_hours() -> None:
    assert checkins.parse_time("9:05") == (9, 5)


@pytest.mark.parametrize("text", ["Mars/Olympus", "", "../etc/passwd", "Europe/", "x" * 100])
def test_unknown_timezone_gets_a_clear_error(text: str) -> None:
    with pytest.raises(UserFacingError, match="Area/City"):
        checkins.parse_timezone(text)


async def test_weekly_checkin_falls_on_todays_weekday_in_the_members_zone(database: Database) -> None:
    # 12:00 UTC on a Monday is 02:00 on Tuesday in Kiritimati (UTC+14).
    async with database.session() as session:
        schedule = await checkins.enable(
            session, GUILD, MEMBER, CheckinCadence.WEEKLY, "08:00", "Pacific/Kiritimati", NOW
        )
    assert checkins.cron_spec(schedule).day_of_week == "tue"


async def test_next_time_is_in_the_members_zone(database: Database) -> None:
    async with database.session() as session:
        schedule = await checkins.enable(
            session, GUILD, MEMBER, CheckinCadence.DAILY, "09:30", "Europe/Berlin", NOW
        )
    upcoming = checkins.next_time(schedule, NOW)  # 13:00 in Berlin: next is tomorrow 09:30
    assert (upcoming.day, upcoming.hour, upcoming.minute) == (3, 9, 30)


async def test_turning_checkins_off_keeps_them_from_being_rebuilt(database: Database) -> None:
    await _enable(database)
    async with database.session() as session:
        assert len(await checkins.active_schedules(session)) == 1
        await checkins.disable(session, GUILD, MEMBER)
    async with database.session() as session:
        assert await checkins.active_schedules(session) == []


async def test_shadow_mode_sends_no_checkin(database: Database) -> None:
    schedule_id = await _enable(database)  # a new guild starts in shadow mode
    assert await _start(database, schedule_id) is None


async def test_one_missed_checkin_adds_one_gentle_note(database: Database) -> None:
    await _live_guild(database)
    schedule_id = await _enable(database)
    first = await _start(database, schedule_id)
    second = await _start(database, schedule_id, NOW + timedelta(days=1))
    assert first.gentle_note is False and second.gentle_note is True


async def test_two_missed_checkins_in_a_row_pause_them(database: Database) -> None:
    await _live_guild(database)
    schedule_id = await _enable(database)
    for day in range(2):
        assert await _start(database, schedule_id, NOW + timedelta(days=day)) is not None
    assert await _start(database, schedule_id, NOW + timedelta(days=2)) is None
    async with database.session() as session:
        assert await checkins.active_schedules(session) == []


async def test_an_answer_resets_the_missed_count(database: Database) -> None:
    await _live_guild(database)
    schedule_id = await _enable(database)
    await _start(database, schedule_id)
    second = await _start(database, schedule_id, NOW + timedelta(days=1))
    async with database.session() as session:
        await checkins.record_mood(session, second.checkin_id, MEMBER, Mood.OKAY, NOW, retention_days=7)
    third = await _start(database, schedule_id, NOW + timedelta(days=2))
    assert third is not None and third.gentle_note is False


async def test_only_the_member_can_answer_their_checkin(database: Database) -> None:
    await _live_guild(database)
    due = await _start(database, await _enable(database))
    with pytest.raises(UserFacingError):
        async with database.session() as session:
            await checkins.record_mood(session, due.checkin_id, 999, Mood.OKAY, NOW, retention_days=7)


async def test_struggling_with_consent_opens_a_moderator_alert(database: Database) -> None:
    await _live_guild(database, EscalationConsent.YES)
    due = await _start(database, await _enable(database))
    async with database.session() as session:
        result = await checkins.record_mood(
            session, due.checkin_id, MEMBER, Mood.STRUGGLING, NOW, retention_days=7
        )
    assert result.outcome is Outcome.ALERT_MODERATORS
    async with database.session() as session:
        row = await session.get(Escalation, result.escalation_id)
    assert row.state is EscalationState.PENDING and row.kind == "checkin" and row.tier == "self_reported"


async def test_talk_request_without_consent_tells_no_moderator(database: Database) -> None:
    await _live_guild(database, EscalationConsent.NO)
    due = await _start(database, await _enable(database))
    async with database.session() as session:
        result = await checkins.record_mood(session, due.checkin_id, MEMBER, Mood.TALK, NOW, retention_days=7)
    assert result.outcome is Outcome.PRIVATE_RESOURCES
    async with database.session() as session:
        row = await session.get(Escalation, result.escalation_id)
    assert row.state is EscalationState.MEMBER_SUPPORTED


async def test_okay_answer_escalates_nothing(database: Database) -> None:
    await _live_guild(database)
    due = await _start(database, await _enable(database))
    async with database.session() as session:
        result = await checkins.record_mood(session, due.checkin_id, MEMBER, Mood.OKAY, NOW, retention_days=7)
        count = len((await session.scalars(select(Escalation))).all())
    assert result.outcome is Outcome.NOTHING and count == 0


async def test_high_tier_text_answer_escalates_and_keeps_text_until_retention(database: Database) -> None:
    await _live_guild(database, EscalationConsent.ASK_FIRST)
    due = await _start(database, await _enable(database))
    risk = RiskResult(probabilities={"suicidal": 0.01}, tier=RiskTier.HIGH, phrase_matches=("high:crisis",))
    async with database.session() as session:
        result = await checkins.record_text(
            session, due.checkin_id, MEMBER, "made-up answer", risk, NOW, defaults=None, retention_days=7
        )
    assert result.outcome is Outcome.ASK_MEMBER and result.tier is RiskTier.HIGH
    async with database.session() as session:
        row = await session.get(Escalation, result.escalation_id)
        assessment = await session.scalar(select(RiskAssessment).where(RiskAssessment.source == "checkin"))
    assert row.state is EscalationState.AWAITING_MEMBER
    assert row.labels == ["crisis phrase"]
    assert assessment.tier == "high"


async def test_closed_dms_stop_checkins_and_are_recorded(database: Database) -> None:
    await _live_guild(database)
    due = await _start(database, await _enable(database))
    async with database.session() as session:
        await checkins.stop_for_closed_dms(session, due.checkin_id)
    async with database.session() as session:
        assert await checkins.active_schedules(session) == []
        member = await session.get(MemberConsent, (GUILD, MEMBER))
    assert member.dms_closed_at is not None


async def test_enabling_again_reopens_dms(database: Database) -> None:
    async with database.session() as session:
        await consent.mark_dms_closed(session, GUILD, MEMBER)
    await _enable(database)
    async with database.session() as session:
        member = await session.get(MemberConsent, (GUILD, MEMBER))
    assert member.dms_closed_at is None


async def test_a_second_run_for_the_same_slot_sends_nothing(database: Database) -> None:
    await _live_guild(database)
    schedule_id = await _enable(database)
    assert await _start(database, schedule_id) is not None
    # A restart in the same minute, a job fired twice, a transaction re-run: the slot's row is found.
    assert await _start(database, schedule_id, NOW + timedelta(minutes=1)) is None
    again = await _start(database, schedule_id, NOW + timedelta(days=1))
    assert again is not None and again.gentle_note is True  # the next slot is a new check-in


async def test_a_job_waking_a_little_early_still_belongs_to_its_slot(database: Database) -> None:
    await _live_guild(database)
    schedule_id = await _enable(database)  # 09:30 Europe/Berlin = 08:30 UTC in March
    slot = datetime(2026, 3, 3, 8, 30, tzinfo=UTC)
    assert await _start(database, schedule_id, slot - timedelta(days=1)) is not None
    assert await _start(database, schedule_id, slot - timedelta(seconds=2)) is not None


async def test_a_checkin_that_never_reached_the_member_is_not_counted_as_missed(database: Database) -> None:
    await _live_guild(database)
    schedule_id = await _enable(database)
    await _start(database, schedule_id, delivered=False)  # the bot died (or Discord failed) before the send
    second = await _start(database, schedule_id, NOW + timedelta(days=1))
    assert second is not None and second.gentle_note is False


_CALM = RiskResult(probabilities={"suicidal": 0.01}, tier=RiskTier.NONE)


async def test_stale_checkin_note_is_refused(database: Database) -> None:
    await _live_guild(database)
    due = await _start(database, await _enable(database))
    three_days_later = NOW + timedelta(days=3)
    with pytest.raises(UserFacingError, match="nothing was saved"):
        async with database.session() as session:
            await checkins.note_target(session, due.checkin_id, MEMBER, three_days_later)
    with pytest.raises(UserFacingError, match="nothing was saved"):
        async with database.session() as session:
            await checkins.record_text(
                session,
                due.checkin_id,
                MEMBER,
                "made-up note",
                _CALM,
                three_days_later,
                defaults=None,
                retention_days=7,
            )
    async with database.session() as session:
        assert await session.scalar(select(RiskAssessment)) is None


async def test_note_on_a_recent_checkin_is_accepted(database: Database) -> None:
    """(guard) The window is for stale check-ins only: later the same day is fine."""
    await _live_guild(database)
    due = await _start(database, await _enable(database))
    later = NOW + timedelta(hours=12)
    async with database.session() as session:
        target = await checkins.note_target(session, due.checkin_id, MEMBER, later)
        result = await checkins.record_text(
            session, due.checkin_id, MEMBER, "made-up note", _CALM, later, defaults=None, retention_days=7
        )
    assert target.guild_id == GUILD and "988" in target.crisis_resources
    assert result.outcome is Outcome.NOTHING


async def test_note_target_refuses_another_members_checkin(database: Database) -> None:
    await _live_guild(database)
    due = await _start(database, await _enable(database))
    with pytest.raises(UserFacingError, match="no longer available"):
        async with database.session() as session:
            await checkins.note_target(session, due.checkin_id, 999, NOW)


def _daily_at(time_of_day: str, created_at: datetime) -> CheckinSchedule:
    return CheckinSchedule(
        guild_id=1,
        user_id=2,
        cadence=CheckinCadence.DAILY,
        time_of_day=time_of_day,
        timezone="UTC",
        created_at=created_at,
    )


@pytest.mark.parametrize(
    ("time_of_day", "created_hours_ago", "missed"),
    [
        ("11:50", 48, True),  # due 10 minutes ago: sent late, once
        ("10:30", 48, False),  # due 90 minutes ago: past the hour's grace, the next slot is tomorrow
        ("11:50", 0.1, False),  # the schedule was made after that time: nothing was missed
        ("12:02", 48, False),  # due in two minutes: its own job sends it
    ],
)
def test_missed_slot_is_the_last_hours_slot_of_an_older_schedule(
    time_of_day: str, created_hours_ago: float, missed: bool
) -> None:
    schedule = _daily_at(time_of_day, NOW - timedelta(hours=created_hours_ago))
    assert (checkins.missed_slot(schedule, NOW) is not None) is missed
