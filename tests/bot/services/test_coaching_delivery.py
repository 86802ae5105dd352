"""Who gets a coaching note, when: consent, shadow mode, interval, daily cap, digests, DMs closed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from bot.db.models import CoachingDefault, MemberConsent
from bot.db.session import Database
from bot.services import coaching_delivery, guild_settings
from bot.services.coaching_delivery import PlanKind
from bot.services.reply_scoring import CoachingStatus, ReplyInput, ReplyScoringPipeline, find_reply
from bot.services.seeker_risk import SeekerPost
from tests.bot.services.responder_fixtures import ScriptedInference

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GUILD, CHANNEL, SEEKER, RESPONDER, MOD = 1, 2, 3, 4, 9
POST = SeekerPost(GUILD, CHANNEL, 500, SEEKER, "I can't sleep before my exams.")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def _configure(database: Database, **changes: object) -> None:
    changes.setdefault("shadow_mode", False)
    async with database.session() as session:
        await guild_settings.update(session, GUILD, MOD, **changes)


async def _opt_in(database: Database) -> None:
    async with database.session() as session:
        await coaching_delivery.set_coaching_choice(session, GUILD, RESPONDER, True, T0)


async def _new_reply(database: Database, inference: ScriptedInference, clock: Clock, message_id: int):
    pipeline = ReplyScoringPipeline(database, inference, retention_days=7, clock=clock)
    await pipeline.score_reply(ReplyInput(GUILD, CHANNEL, message_id, RESPONDER, "That sounds hard.", POST))
    async with database.session() as session:
        return await coaching_delivery.plan_for_new_reply(session, message_id, clock.now)


async def _send(database: Database, plan, now: datetime, status: str = "sent") -> None:
    async with database.session() as session:
        await coaching_delivery.record_delivery(session, plan, status, now, dm_message_id=1)


async def _status(database: Database, message_id: int) -> str:
    async with database.session() as session:
        row = await find_reply(session, message_id)
    assert row is not None
    return row.coaching_status


async def test_new_guild_in_shadow_mode_sends_nothing(
    database: Database, inference: ScriptedInference
) -> None:
    await _opt_in(database)
    plan = await _new_reply(database, inference, Clock(), 601)
    assert plan.kind is PlanKind.NOTHING
    assert await _status(database, 601) == CoachingStatus.SHADOW.value


async def test_undecided_member_in_opt_in_guild_is_invited_once(
    database: Database, inference: ScriptedInference
) -> None:
    await _configure(database)
    clock = Clock()
    first = await _new_reply(database, inference, clock, 601)
    second = await _new_reply(database, inference, clock, 602)
    assert first.kind is PlanKind.INVITE
    assert second.kind is PlanKind.NOTHING
    assert await _status(database, 602) == CoachingStatus.AWAITING_CONSENT.value


async def test_opt_out_guild_coaches_without_an_invitation(
    database: Database, inference: ScriptedInference
) -> None:
    await _configure(database, coaching_default=CoachingDefault.OPT_OUT)
    plan = await _new_reply(database, inference, Clock(), 601)
    assert plan.kind is PlanKind.COACH
    assert plan.note is not None and "/1/2/601" in plan.note.text


async def test_first_note_in_an_opt_out_guild_introduces_peercare_once(
    database: Database, inference: ScriptedInference
) -> None:
    await _configure(database, coaching_default=CoachingDefault.OPT_OUT, coaching_interval_minutes=0)
    clock = Clock()
    first = await _new_reply(database, inference, clock, 601)
    await _send(database, first, clock.now)
    second = await _new_reply(database, inference, clock, 602)
    assert first.first_contact
    assert second.kind is PlanKind.COACH and not second.first_contact


async def test_member_who_turned_coaching_on_gets_no_introduction(
    database: Database, inference: ScriptedInference
) -> None:
    await _configure(database)
    await _opt_in(database)
    plan = await _new_reply(database, inference, Clock(), 601)
    assert plan.kind is PlanKind.COACH and not plan.first_contact


async def test_member_who_said_no_gets_nothing(database: Database, inference: ScriptedInference) -> None:
    await _configure(database, coaching_default=CoachingDefault.OPT_OUT)
    async with database.session() as session:
        await coaching_delivery.set_coaching_choice(session, GUILD, RESPONDER, False, T0)
    plan = await _new_reply(database, inference, Clock(), 601)
    assert plan.kind is PlanKind.NOTHING
    assert await _status(database, 601) == CoachingStatus.NOT_WANTED.value


async def test_accepting_the_invitation_queues_the_waiting_reply(
    database: Database, inference: ScriptedInference
) -> None:
    await _configure(database)
    clock = Clock()
    await _new_reply(database, inference, clock, 601)
    async with database.session() as session:
        queued = await coaching_delivery.set_coaching_choice(session, GUILD, RESPONDER, True, T0)
        plan = await coaching_delivery.plan_due(session, GUILD, RESPONDER, T0)
    assert queued == 1
    assert plan.kind is PlanKind.COACH and plan.reply_message_ids == (601,)


async def test_declining_the_invitation_sets_the_waiting_reply_aside(
    database: Database, inference: ScriptedInference
) -> None:
    await _configure(database)
    await _new_reply(database, inference, Clock(), 601)
    async with database.session() as session:
        await coaching_delivery.set_coaching_choice(session, GUILD, RESPONDER, False, T0)
    assert await _status(database, 601) == CoachingStatus.NOT_WANTED.value


async def test_second_reply_within_the_interval_waits(
    database: Database, inference: ScriptedInference
) -> None:
    await _configure(database, coaching_interval_minutes=60)
    await _opt_in(database)
    clock = Clock()
    first = await _new_reply(database, inference, clock, 601)
    await _send(database, first, clock.now)
    clock.now += timedelta(minutes=10)
    second = await _new_reply(database, inference, clock, 602)
    assert second.kind is PlanKind.WAIT
    assert second.due_at == T0 + timedelta(minutes=60)
    assert await _status(database, 601) == CoachingStatus.SENT.value
    assert await _status(database, 602) == CoachingStatus.QUEUED.value


async def test_replies_that_waited_become_one_digest(
    database: Database, inference: ScriptedInference
) -> None:
    await _configure(database, coaching_interval_minutes=60)
    await _opt_in(database)
    clock = Clock()
    await _send(database, await _new_reply(database, inference, clock, 601), clock.now)
    for message_id in (602, 603):
        clock.now += timedelta(minutes=5)
        await _new_reply(database, inference, clock, message_id)
    async with database.session() as session:
        assert await coaching_delivery.responders_with_queued_replies(session) == [(GUILD, RESPONDER)]
        plan = await coaching_delivery.plan_due(session, GUILD, RESPONDER, T0 + timedelta(minutes=61))
    assert plan.kind is PlanKind.DIGEST and plan.reply_message_ids == (602, 603)
    await _send(database, plan, T0 + timedelta(minutes=61))
    assert await _status(database, 602) == CoachingStatus.DIGESTED.value
    async with database.session() as session:
        assert await coaching_delivery.responders_with_queued_replies(session) == []


async def test_daily_cap_holds_notes_until_the_oldest_leaves_the_day(
    database: Database, inference: ScriptedInference
) -> None:
    await _configure(database, coaching_interval_minutes=0, coaching_daily_cap=2)
    await _opt_in(database)
    clock = Clock()
    for message_id in (601, 602):
        await _send(database, await _new_reply(database, inference, clock, message_id), clock.now)
        clock.now += timedelta(hours=1)
    third = await _new_reply(database, inference, clock, 603)
    assert third.kind is PlanKind.WAIT
    assert third.due_at == T0 + timedelta(hours=24)


async def test_dms_closed_stops_further_tries(database: Database, inference: ScriptedInference) -> None:
    await _configure(database, coaching_interval_minutes=0)
    await _opt_in(database)
    clock = Clock()
    await _send(database, await _new_reply(database, inference, clock, 601), clock.now, status="dms_closed")
    later = await _new_reply(database, inference, clock, 602)
    assert later.kind is PlanKind.NOTHING
    async with database.session() as session:
        member = await session.scalar(select(MemberConsent))
    assert member is not None and member.dms_closed_at is not None
    assert await _status(database, 602) == CoachingStatus.DMS_CLOSED.value


async def test_turning_coaching_off_drops_queued_replies(
    database: Database, inference: ScriptedInference
) -> None:
    await _configure(database, coaching_interval_minutes=60)
    await _opt_in(database)
    clock = Clock()
    await _send(database, await _new_reply(database, inference, clock, 601), clock.now)
    await _new_reply(database, inference, clock, 602)
    async with database.session() as session:
        await coaching_delivery.set_coaching_choice(session, GUILD, RESPONDER, False, clock.now)
    assert await _status(database, 602) == CoachingStatus.NOT_WANTED.value


async def test_a_reply_is_planned_only_once(database: Database, inference: ScriptedInference) -> None:
    await _configure(database, coaching_default=CoachingDefault.OPT_OUT)
    clock = Clock()
    first = await _new_reply(database, inference, clock, 601)
    await _send(database, first, clock.now)
    async with database.session() as session:
        again = await coaching_delivery.plan_for_new_reply(session, 601, clock.now)
    assert again.kind is PlanKind.NOTHING
