"""Check-ins: set up by slash command, rebuilt after a restart, answered by buttons or a note, escalated per consent.

The scheduler's jobs are run by calling the job function the scheduler holds; nobody waits for a clock.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.db.models import CheckinSchedule, EscalationConsent, EscalationState, RiskAssessment, utcnow
from bot.services import checkins
from cogs import checkins as checkins_cog
from tests.e2e.safety_support import CRISIS_POST, alerts, go_live, wait_for_alert, wait_for_case

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e

MOODS = ("okay", "so_so", "struggling", "talk")


async def _turn_on(e2e, user=None, **options):
    user = user or e2e.cast.alice
    values = {"cadence": "daily", "time": "09:30", "timezone": "Europe/Berlin", **options}
    command = await e2e.slash("peercare checkin on", values, user=user, channel=e2e.cast.general)
    return await command.reply()


async def _schedule(e2e) -> CheckinSchedule | None:
    async with e2e.database.session() as session:
        return await session.scalar(select(CheckinSchedule))


async def _fire(e2e, schedule_id: int, days_later: int = 0):
    """Run the check-in job exactly as the scheduler would (``days_later``: at a later day's slot); return the DM."""
    job = e2e.bot.scheduler.get_job(checkins.job_id(schedule_id))
    assert job is not None, "no scheduler job for the check-in"
    assert await job.func(*job.args, now=utcnow() + timedelta(days=days_later)) is True
    return await e2e.wait_for_dm(e2e.cast.alice)


async def _checkin_dm(e2e, consent=EscalationConsent.YES):
    await go_live(e2e, consent)
    await _turn_on(e2e)
    schedule = await _schedule(e2e)
    dm = await _fire(e2e, schedule.id)
    checkin_id = int(dm.custom_ids()[0].rsplit(":", 1)[1])
    return dm, checkin_id


async def test_checkin_schedule_survives_restart(e2e):
    await go_live(e2e)
    answer = await _turn_on(e2e)
    assert answer.ephemeral and "09:30 (Europe/Berlin)" in answer.content
    schedule = await _schedule(e2e)
    await e2e.restart_bot()
    job = e2e.bot.scheduler.get_job(checkins.job_id(schedule.id))
    fields = {field.name: str(field) for field in job.trigger.fields}
    assert (fields["hour"], fields["minute"], str(job.trigger.timezone)) == ("9", "30", "Europe/Berlin")
    dm = await _fire(e2e, schedule.id)
    assert "How are you doing today?" in dm.content
    assert [cid.split(":")[2] for cid in dm.custom_ids()] == [*MOODS, "note"]


async def test_checkin_due_while_the_bot_was_down_is_sent_once_after_the_restart(e2e):
    """The scheduler's jobs live in memory: a slot that fell due during a restart was forgotten, not sent late."""
    await go_live(e2e)
    due = utcnow() - timedelta(minutes=10)
    await _turn_on(e2e, time=f"{due:%H:%M}", timezone="UTC")
    async with e2e.database.session() as session:
        schedule = await session.scalar(select(CheckinSchedule))
        schedule.created_at = utcnow() - timedelta(days=1)  # made before the slot it missed
        await session.commit()
    await e2e.restart_bot()
    job = e2e.bot.scheduler.get_job(checkins.catch_up_job_id(schedule.id))
    assert job is not None, "no catch-up for the check-in that fell due while the bot was down"
    assert await job.func(*job.args) is True
    dm = await e2e.wait_for_dm(e2e.cast.alice)
    assert "How are you doing today?" in dm.content
    assert await job.func(*job.args) is False  # one check-in per slot


@pytest.mark.parametrize(
    ("options", "expected"),
    [({"time": "25:00"}, "HH:MM"), ({"timezone": "Mars/Olympus_Mons"}, "Area/City")],
)
async def test_checkin_refuses_bad_time_or_timezone_clearly(e2e, options, expected):
    answer = await _turn_on(e2e, **options)
    assert answer.ephemeral and expected in answer.content
    assert await _schedule(e2e) is None


async def test_checkin_off_removes_the_job(e2e):
    await go_live(e2e)
    await _turn_on(e2e)
    schedule = await _schedule(e2e)
    command = await e2e.slash("peercare checkin off", user=e2e.cast.alice, channel=e2e.cast.general)
    assert "Check-ins are off" in (await command.reply()).content
    assert e2e.bot.scheduler.get_job(checkins.job_id(schedule.id)) is None
    await e2e.restart_bot()
    assert e2e.bot.scheduler.get_job(checkins.job_id(schedule.id)) is None


async def test_checkin_struggling_escalates_with_consent(e2e):
    dm, checkin_id = await _checkin_dm(e2e, EscalationConsent.YES)
    click = await e2e.click(dm, f"peercare:checkin:struggling:{checkin_id}", user=e2e.cast.alice)
    answer = await click.reply()
    assert "let the server's moderators know" in answer.content
    alert = await wait_for_alert(e2e)
    assert "struggling" in alert.text
    assert (await wait_for_case(e2e, EscalationState.ALERTED)).kind == "checkin"


async def test_checkin_talk_request_without_consent_sends_resources_only(e2e):
    dm, checkin_id = await _checkin_dm(e2e, EscalationConsent.NO)
    click = await e2e.click(dm, f"peercare:checkin:talk:{checkin_id}", user=e2e.cast.alice)
    answer = await click.reply()
    assert "haven't told anyone" in answer.content and "988" in answer.content
    await e2e.settle()
    assert alerts(e2e) == []


async def test_checkin_talk_request_with_consent_alerts_moderators(e2e):
    dm, checkin_id = await _checkin_dm(e2e, EscalationConsent.YES)
    await e2e.click(dm, f"peercare:checkin:talk:{checkin_id}", user=e2e.cast.alice)
    alert = await wait_for_alert(e2e)
    assert "asked to talk to someone" in alert.text
    assert (await wait_for_case(e2e, EscalationState.ALERTED)).kind == "talk_request"


async def test_checkin_okay_answer_escalates_nothing(e2e):
    dm, checkin_id = await _checkin_dm(e2e, EscalationConsent.YES)
    click = await e2e.click(dm, f"peercare:checkin:okay:{checkin_id}", user=e2e.cast.alice)
    assert "Glad to hear it" in (await click.reply()).content
    await e2e.settle()
    assert alerts(e2e) == []


async def test_checkin_note_is_risk_scored_and_asks_first(e2e):
    dm, checkin_id = await _checkin_dm(e2e, EscalationConsent.ASK_FIRST)
    opened = await e2e.click(dm, f"peercare:checkin:note:{checkin_id}", user=e2e.cast.alice)
    await opened.response()
    submitted = await e2e.submit_modal(opened, {"note": CRISIS_POST})
    question = await submitted.reply(lambda m: "Would you like one of the server's moderators" in m.content)
    case = await wait_for_case(e2e, EscalationState.AWAITING_MEMBER)
    assert question.custom_ids() == [f"peercare:askfirst:yes:{case.id}", f"peercare:askfirst:no:{case.id}"]
    async with e2e.database.session() as session:
        risk = await session.scalar(select(RiskAssessment).where(RiskAssessment.source == "checkin"))
    assert risk.tier == "high"
    await e2e.settle()
    assert alerts(e2e) == []


async def test_closed_dms_stop_checkins(e2e):
    await go_live(e2e)
    await _turn_on(e2e)
    schedule = await _schedule(e2e)
    e2e.faults.block_dms(e2e.cast.alice.id)
    job = e2e.bot.scheduler.get_job(checkins.job_id(schedule.id))
    assert await job.func(*job.args) is False
    assert e2e.bot.scheduler.get_job(checkins.job_id(schedule.id)) is None
    assert (await _schedule(e2e)).active is False


async def test_missed_checkins_are_not_nagged_about_more_than_once(e2e):
    await go_live(e2e)
    await _turn_on(e2e)
    schedule = await _schedule(e2e)
    first = await _fire(e2e, schedule.id)
    second = await _fire(e2e, schedule.id, days_later=1)  # the first went unanswered
    job = e2e.bot.scheduler.get_job(checkins.job_id(schedule.id))
    # The second went unanswered too: paused, no third DM.
    assert await job.func(*job.args, now=utcnow() + timedelta(days=2)) is False
    await e2e.settle()
    assert "pause" not in first.content and "pause check-ins" in second.content
    assert len(e2e.dms_to(e2e.cast.alice)) == 2
    assert (await _schedule(e2e)).active is False
    assert e2e.bot.scheduler.get_job(checkins.job_id(schedule.id)) is None


# -- notes: owner and recency checked before the risk model runs, and a per-member rate limit --------------

CALM_NOTE = "Had a long day at work but I'm okay"


def _count_risk_calls(e2e) -> list[int]:
    """The id of every risk request the bot makes from now on (the real model still answers each one)."""
    inference = e2e.bot.inference
    original, seen = inference.score_risk, []

    async def counted(request):
        seen.append(request.message_id)
        return await original(request)

    inference.score_risk = counted
    return seen


async def _note(e2e, dm, checkin_id: int, text: str, user=None):
    opened = await e2e.click(dm, f"peercare:checkin:note:{checkin_id}", user=user or e2e.cast.alice)
    await opened.response()
    submitted = await e2e.submit_modal(opened, {"note": text})
    return await submitted.reply(lambda m: bool(m.content))


async def _notes_saved(e2e) -> int:
    async with e2e.database.session() as session:
        return len(
            (await session.scalars(select(RiskAssessment).where(RiskAssessment.source == "checkin"))).all()
        )


async def test_checkin_note_checks_owner_before_scoring(e2e):
    dm, checkin_id = await _checkin_dm(e2e)
    risk_calls = _count_risk_calls(e2e)
    answer = await _note(e2e, dm, checkin_id, CRISIS_POST, user=e2e.cast.bob)
    await e2e.settle()
    assert "no longer available" in answer.content
    assert risk_calls == [] and await _notes_saved(e2e) == 0 and alerts(e2e) == []


async def test_stale_checkin_note_is_refused_kindly(e2e):
    await go_live(e2e)
    await _turn_on(e2e)
    schedule = await _schedule(e2e)
    dm = await _fire(e2e, schedule.id, days_later=-3)  # a check-in sent three days ago
    checkin_id = int(dm.custom_ids()[0].rsplit(":", 1)[1])
    risk_calls = _count_risk_calls(e2e)
    answer = await _note(e2e, dm, checkin_id, CALM_NOTE)
    await e2e.settle()
    assert "nothing was saved" in answer.content and "next check-in" in answer.content
    assert "988" in answer.content  # the server's crisis resources, in case the words were heavy
    assert risk_calls == [] and await _notes_saved(e2e) == 0


async def test_checkin_notes_are_rate_limited_per_member(e2e):
    dm, checkin_id = await _checkin_dm(e2e)
    risk_calls = _count_risk_calls(e2e)
    allowed = checkins_cog.NOTE_COOLDOWN.rate
    for _ in range(allowed):
        assert "Thank you for sharing" in (await _note(e2e, dm, checkin_id, CALM_NOTE)).content
    answer = await _note(e2e, dm, checkin_id, CALM_NOTE)
    await e2e.settle()
    assert "another note in" in answer.content and "not saved" in answer.content and "988" in answer.content
    assert len(risk_calls) == allowed
