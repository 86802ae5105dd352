"""Two-phase coaching delivery: claimed before the send, recorded after it, settled if the record never came."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bot.db.models import CoachingDefault, CoachingDelivery, MemberConsent, ScoredReply
from bot.db.session import Database
from bot.services import coaching_delivery
from bot.services.coaching_delivery import SENDING, PlanKind, Settled
from bot.services.reply_scoring import CoachingStatus, ReplyInput, ReplyScoringPipeline
from bot.sharding import GuildOwnership, shard_of
from tests.bot.services.responder_fixtures import ScriptedInference
from tests.bot.services.test_coaching_delivery import (
    GUILD,
    POST,
    RESPONDER,
    T0,
    Clock,
    _configure,
    _opt_in,
    _status,
)


async def _scored(database: Database, inference: ScriptedInference, clock: Clock, message_id: int) -> None:
    pipeline = ReplyScoringPipeline(database, inference, retention_days=7, clock=clock)
    await pipeline.score_reply(ReplyInput(GUILD, 2, message_id, RESPONDER, "That sounds hard.", POST))


async def _claim_new(database: Database, message_id: int, now=T0):  # type: ignore[no-untyped-def]
    return await database.run(
        "test: plan and claim",
        lambda session: coaching_delivery.plan_and_claim_new_reply(session, message_id, now),
    )


async def _deliveries(database: Database) -> list[CoachingDelivery]:
    async with database.session() as session:
        return list(await session.scalars(select(CoachingDelivery).order_by(CoachingDelivery.id)))


async def _unfinished(database: Database):  # type: ignore[no-untyped-def]
    return await database.run("test: unfinished", coaching_delivery.unfinished_deliveries)


async def _settle(database: Database, delivery_id: int, *, dm_message_id=None, verified_absent=False):  # type: ignore[no-untyped-def]
    return await database.run(
        "test: settle",
        lambda session: coaching_delivery.settle_unfinished(
            session, delivery_id, T0, dm_message_id=dm_message_id, verified_absent=verified_absent
        ),
    )


async def test_a_note_is_claimed_as_sending_before_it_is_sent(
    database: Database, inference: ScriptedInference
) -> None:
    await _configure(database, coaching_interval_minutes=0)
    await _opt_in(database)
    await _scored(database, inference, Clock(), 601)
    plan = await _claim_new(database, 601)
    assert plan.kind is PlanKind.COACH and plan.delivery_id is not None
    (delivery,) = await _deliveries(database)
    assert (delivery.id, delivery.status, delivery.reply_message_ids) == (plan.delivery_id, SENDING, [601])
    assert delivery.sent_at == T0  # the attempt time
    assert await _status(database, 601) == SENDING
    async with database.session() as session:  # the flush does not plan a claimed reply again
        assert await coaching_delivery.responders_with_queued_replies(session) == []


async def test_recording_the_send_settles_the_claim_and_a_second_record_changes_nothing(
    database: Database, inference: ScriptedInference
) -> None:
    await _configure(database, coaching_interval_minutes=0)
    await _opt_in(database)
    await _scored(database, inference, Clock(), 601)
    plan = await _claim_new(database, 601)
    for dm_id in (111, 222):  # Database.run may re-run the record; the first one stands
        await database.run(
            "test: record",
            lambda session, dm_id=dm_id: coaching_delivery.record_delivery(
                session, plan, "sent", T0, dm_message_id=dm_id
            ),
        )
    (delivery,) = await _deliveries(database)
    assert (delivery.status, delivery.dm_message_id) == ("sent", 111)
    assert await _status(database, 601) == CoachingStatus.SENT.value


async def test_a_claim_counts_against_the_interval(database: Database, inference: ScriptedInference) -> None:
    await _configure(database, coaching_interval_minutes=60)
    await _opt_in(database)
    clock = Clock()
    await _scored(database, inference, clock, 601)
    await _claim_new(database, 601)  # never recorded: it may have reached the member
    clock.now += timedelta(minutes=5)
    await _scored(database, inference, clock, 602)
    later = await _claim_new(database, 602, clock.now)
    assert later.kind is PlanKind.WAIT and later.delivery_id is None


async def test_an_unfinished_note_found_in_the_dms_is_recorded_as_sent(
    database: Database, inference: ScriptedInference
) -> None:
    await _configure(database, coaching_interval_minutes=0)
    await _opt_in(database)
    await _scored(database, inference, Clock(), 601)
    plan = await _claim_new(database, 601)
    (item,) = await _unfinished(database)
    assert item.delivery_id == plan.delivery_id and item.kind is PlanKind.COACH
    assert item.jump_urls == ("https://discord.com/channels/1/2/601",)
    assert await _settle(database, item.delivery_id, dm_message_id=999) is Settled.FOUND
    (delivery,) = await _deliveries(database)
    assert (delivery.status, delivery.dm_message_id) == ("sent", 999)
    assert await _status(database, 601) == CoachingStatus.SENT.value
    assert await _unfinished(database) == []
    assert await _settle(database, item.delivery_id, dm_message_id=1000) is Settled.GONE  # settled once


async def test_an_unfinished_note_that_cannot_be_verified_is_counted_as_sent_not_resent(
    database: Database, inference: ScriptedInference
) -> None:
    await _configure(database, coaching_interval_minutes=0)
    await _opt_in(database)
    await _scored(database, inference, Clock(), 601)
    plan = await _claim_new(database, 601)
    assert await _settle(database, plan.delivery_id) is Settled.UNCONFIRMED
    (delivery,) = await _deliveries(database)
    assert delivery.status == coaching_delivery.UNCONFIRMED
    assert await _status(database, 601) == CoachingStatus.SENT.value
    async with database.session() as session:
        assert await coaching_delivery.responders_with_queued_replies(session) == []


async def test_an_unfinished_note_verifiably_not_sent_is_queued_again_and_sent_once(
    database: Database, inference: ScriptedInference
) -> None:
    await _configure(database, coaching_interval_minutes=60)
    await _opt_in(database)
    await _scored(database, inference, Clock(), 601)
    plan = await _claim_new(database, 601)
    assert await _settle(database, plan.delivery_id, verified_absent=True) is Settled.REQUEUED
    assert await _status(database, 601) == CoachingStatus.QUEUED.value
    # The claim that never reached the member does not hold the next note back.
    again = await database.run(
        "test: plan due",
        lambda session: coaching_delivery.plan_and_claim_due(
            session, GUILD, RESPONDER, T0 + timedelta(minutes=1)
        ),
    )
    assert again.kind is PlanKind.COACH and again.reply_message_ids == (601,)
    assert [d.status for d in await _deliveries(database)] == [coaching_delivery.NOT_SENT, SENDING]


async def test_an_unfinished_first_contact_note_found_later_counts_as_the_introduction(
    database: Database, inference: ScriptedInference
) -> None:
    await _configure(database, coaching_default=CoachingDefault.OPT_OUT, coaching_interval_minutes=0)
    await _scored(database, inference, Clock(), 601)
    plan = await _claim_new(database, 601)
    assert plan.first_contact
    await _settle(database, plan.delivery_id, dm_message_id=5)
    async with database.session() as session:
        member = await session.scalar(select(MemberConsent))
    assert member is not None and member.coaching_invited_at is not None


async def test_an_unfinished_claim_whose_replies_were_erased_is_dropped(
    database: Database, inference: ScriptedInference
) -> None:
    await _configure(database, coaching_interval_minutes=0)
    await _opt_in(database)
    await _scored(database, inference, Clock(), 601)
    plan = await _claim_new(database, 601)
    async with database.session() as session:
        await session.execute(ScoredReply.__table__.delete())
    assert await _settle(database, plan.delivery_id, dm_message_id=5) is Settled.GONE
    assert await _deliveries(database) == []


async def test_a_reply_left_pending_is_listed_for_the_flush_for_a_day(
    database: Database, inference: ScriptedInference
) -> None:
    await _configure(database, coaching_interval_minutes=0)
    await _opt_in(database)
    await _scored(database, inference, Clock(), 601)  # scored; its coaching plan never ran
    async with database.session() as session:
        assert await coaching_delivery.replies_left_pending(session, T0) == [(GUILD, RESPONDER, 601)]
        assert await coaching_delivery.replies_left_pending(session, T0 + timedelta(hours=25)) == []
    await _claim_new(database, 601)
    async with database.session() as session:
        assert await coaching_delivery.replies_left_pending(session, T0) == []


async def test_the_flush_lists_only_the_coaching_work_of_guilds_this_process_owns(
    database: Database, inference: ScriptedInference
) -> None:
    owner = GuildOwnership(2, frozenset({shard_of(GUILD, 2)}))
    other = GuildOwnership(2, frozenset({1 - shard_of(GUILD, 2)}))
    await _configure(database, coaching_interval_minutes=60)
    await _opt_in(database)
    clock = Clock()
    await _scored(database, inference, clock, 601)  # left pending: its plan never ran
    async with database.session() as session:
        assert await coaching_delivery.replies_left_pending(session, T0, owner) == [(GUILD, RESPONDER, 601)]
        assert await coaching_delivery.replies_left_pending(session, T0, other) == []
    plan = await _claim_new(database, 601)  # claimed, the DM never recorded: unfinished
    unfinished = [
        await database.run("test: unfinished", lambda s, o=o: coaching_delivery.unfinished_deliveries(s, o))
        for o in (owner, other)
    ]
    assert [[u.delivery_id for u in found] for found in unfinished] == [[plan.delivery_id], []]
    clock.now += timedelta(minutes=5)
    await _scored(database, inference, clock, 602)
    await _claim_new(database, 602, clock.now)  # within the interval: queued for a digest
    assert await _status(database, 602) == CoachingStatus.QUEUED.value
    async with database.session() as session:
        assert await coaching_delivery.responders_with_queued_replies(session, owner) == [(GUILD, RESPONDER)]
        assert await coaching_delivery.responders_with_queued_replies(session, other) == []
