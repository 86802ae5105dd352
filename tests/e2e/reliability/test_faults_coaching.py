"""Coaching DMs exactly once when the database is locked or the bot dies around a send.

Delivery has two phases (``bot/services/coaching_delivery.py``): the note's replies are claimed ("sending")
in a committed transaction before the DM goes out, and recorded after it. These tests break the chain at
each link with the real bot, the loopback Discord server and an Alembic-migrated SQLite file:

- the record after the send meets a lock that outlasts every ``Database.run`` retry;
- the plan for a newly scored reply meets such a lock (the reply stays ``pending``);
- the process dies after the send and before the record (``restart_bot(crash=True)``);
- the process dies after the claim and before the send;
- (check-ins) the process dies after a check-in DM, before its message id is recorded.

A lock is another connection's ``BEGIN EXCLUSIVE`` with SQLite's own busy wait cut to 100 ms (as in
``test_faults_database.py``), so the retry layer is what meets it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.db import session as db_session
from bot.db.models import Checkin, CheckinSchedule, CoachingDelivery, RiskAssessment, utcnow
from bot.services import checkins, coaching_delivery
from bot.services.reply_scoring import CoachingStatus
from tests.discord_server.faults import missing_access
from tests.e2e._features import (
    coaching_on,
    count_rows,
    go_live,
    settings_for,
    stored_reply,
    wait_for_stored_reply,
)

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e

SEEKER_TEXT = "My exams are next week and I can't sleep."
REPLY_TEXT = "That sounds exhausting. I'm here for you."


@pytest.fixture
def e2e_settings(e2e_inference_config, monkeypatch: pytest.MonkeyPatch) -> dict:
    """SQLite gives up on a lock after 100 ms instead of 5 s (set before the bot opens a connection)."""
    monkeypatch.setattr(db_session, "SQLITE_BUSY_TIMEOUT_MS", 100)
    return settings_for(e2e_inference_config)


async def _reply(e2e):  # type: ignore[no-untyped-def]
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)
    # The post's own risk row is written before the reply arrives, so a lock taken for the reply's coaching
    # meets only coaching.
    await e2e.eventually(
        lambda: count_rows(e2e, RiskAssessment, RiskAssessment.message_id == post.id),
        timeout=15,
        what="the post's risk row",
    )
    return await e2e.say(e2e.cast.support, e2e.cast.bob, REPLY_TEXT, reply_to=post)


async def _deliveries(e2e) -> list[CoachingDelivery]:
    async with e2e.database.session() as session:
        return list(await session.scalars(select(CoachingDelivery).order_by(CoachingDelivery.id)))


def _notes(e2e) -> list[Any]:
    return [dm for dm in e2e.dms_to(e2e.cast.bob) if "did well" in dm.content]


def _history_reads(e2e) -> list[Any]:
    return e2e.requests.find(method="GET", path=f"/channels/{e2e.dm_channel(e2e.cast.bob).id}/messages*")


async def _flush(e2e) -> int:
    return await e2e.bot.get_cog("Coaching").flush_due()


async def test_coaching_dm_recorded_after_a_lock_is_not_sent_again(e2e, write_lock, caplog):
    await go_live(e2e)
    await coaching_on(e2e, e2e.cast.bob)

    def take(request) -> bool:  # type: ignore[no-untyped-def]
        write_lock.take()  # the DM goes through; recording it meets the lock
        return False

    e2e.faults.next_request(
        None, method="POST", path=f"/channels/{e2e.dm_channel(e2e.cast.bob).id}/messages", when=take
    )
    with caplog.at_level(logging.WARNING):
        reply = await _reply(e2e)
        await e2e.eventually(
            lambda: _true("record coaching delivery" in caplog.text and "giving up after 4" in caplog.text),
            timeout=20,
            what="the record to give up",
        )
    write_lock.release()
    (note,) = _notes(e2e)
    assert (await stored_reply(e2e, reply.id)).coaching_status == coaching_delivery.SENDING
    (delivery,) = await _deliveries(e2e)
    assert delivery.status == coaching_delivery.SENDING and delivery.dm_message_id is None

    await _flush(e2e)  # before the fix, the reply was still "queued" here and went out again in a digest
    await e2e.settle()
    assert [dm.id for dm in _notes(e2e)] == [note.id]
    (delivery,) = await _deliveries(e2e)
    assert (delivery.status, delivery.dm_message_id) == ("sent", note.id)  # found in the DM history
    assert (await stored_reply(e2e, reply.id)).coaching_status == CoachingStatus.SENT.value
    assert _history_reads(e2e)
    assert REPLY_TEXT not in caplog.text and SEEKER_TEXT not in caplog.text


async def test_reply_planned_during_a_lock_is_coached_once_later(e2e, write_lock, caplog, monkeypatch):
    await go_live(e2e)
    await coaching_on(e2e, e2e.cast.bob)
    plan_for_new_reply = coaching_delivery.plan_for_new_reply

    async def locked_first(session, reply_message_id, now):  # type: ignore[no-untyped-def]
        write_lock.take()  # taken once: from here on every attempt to plan this reply meets the lock
        return await plan_for_new_reply(session, reply_message_id, now)

    monkeypatch.setattr(coaching_delivery, "plan_for_new_reply", locked_first)
    with caplog.at_level(logging.WARNING):
        reply = await _reply(e2e)
        await e2e.eventually(
            lambda: _true(f"during plan coaching for reply {reply.id}: giving up" in caplog.text),
            timeout=20,
            what="the plan to give up",
        )
    monkeypatch.setattr(coaching_delivery, "plan_for_new_reply", plan_for_new_reply)
    write_lock.release()
    await e2e.settle()
    assert (await stored_reply(e2e, reply.id)).coaching_status == CoachingStatus.PENDING.value
    assert _notes(e2e) == []
    assert f"coaching for reply {reply.id} left for the flush" in caplog.text

    assert await _flush(e2e) == 1
    await wait_for_stored_reply(e2e, reply.id, where=lambda r: r.coaching_status == CoachingStatus.SENT.value)
    await _flush(e2e)
    await e2e.settle()
    (note,) = _notes(e2e)
    assert reply.jump_url_path in note.content
    assert [d.status for d in await _deliveries(e2e)] == ["sent"]


async def test_crash_between_coaching_send_and_record_sends_no_second_dm(e2e, freeze):
    await go_live(e2e)
    await coaching_on(e2e, e2e.cast.bob)
    frozen = freeze(coaching_delivery, "record_delivery")  # the DM is sent; the database never hears of it
    reply = await _reply(e2e)
    await frozen.wait_reached()
    (note,) = _notes(e2e)
    frozen.thaw()
    await e2e.restart_bot(crash=True)
    assert (await stored_reply(e2e, reply.id)).coaching_status == coaching_delivery.SENDING

    await _flush(e2e)
    await _flush(e2e)
    await e2e.settle()
    assert [dm.id for dm in _notes(e2e)] == [note.id]
    (delivery,) = await _deliveries(e2e)
    assert (delivery.status, delivery.dm_message_id) == ("sent", note.id)
    assert (await stored_reply(e2e, reply.id)).coaching_status == CoachingStatus.SENT.value
    assert _history_reads(e2e)  # it looked before deciding


async def test_crash_between_coaching_claim_and_send_sends_the_note_once_after_restart(e2e, freeze):
    await go_live(e2e)
    await coaching_on(e2e, e2e.cast.bob)
    # The bot loads cogs/ as extensions: freeze the class it actually loaded.
    frozen = freeze(
        type(e2e.bot.get_cog("Coaching")), "_send_dm"
    )  # claimed ("sending", committed); the DM never leaves
    reply = await _reply(e2e)
    await frozen.wait_reached()
    assert _notes(e2e) == []
    frozen.thaw()
    await e2e.restart_bot(crash=True)
    assert (await stored_reply(e2e, reply.id)).coaching_status == coaching_delivery.SENDING

    await _flush(e2e)  # the DM history shows it never went out: queued again and sent, within the limits
    await wait_for_stored_reply(e2e, reply.id, where=lambda r: r.coaching_status == CoachingStatus.SENT.value)
    await _flush(e2e)
    await e2e.settle()
    (note,) = _notes(e2e)
    assert reply.jump_url_path in note.content
    assert [(d.status, d.dm_message_id) for d in await _deliveries(e2e)] == [
        (coaching_delivery.NOT_SENT, None),
        ("sent", note.id),
    ]


async def test_unreadable_dm_history_counts_an_unrecorded_note_as_sent(e2e, freeze):
    await go_live(e2e)
    await coaching_on(e2e, e2e.cast.bob)
    frozen = freeze(coaching_delivery, "record_delivery")
    reply = await _reply(e2e)
    await frozen.wait_reached()
    frozen.thaw()
    await e2e.restart_bot(crash=True)
    # Only Bob's DM history is unreadable (start-up catch-up reads the support channel's history meanwhile).
    bobs_dms = e2e.dm_channel(e2e.cast.bob)
    e2e.faults.next_request(missing_access(), method="GET", path=f"/channels/{bobs_dms.id}/messages*")
    await _flush(e2e)
    await e2e.settle()
    assert len(_notes(e2e)) == 1  # a missed note is preferred to a duplicate
    (delivery,) = await _deliveries(e2e)
    assert delivery.status == coaching_delivery.UNCONFIRMED
    assert (await stored_reply(e2e, reply.id)).coaching_status == CoachingStatus.SENT.value


async def _true(value: bool) -> bool:
    return value


async def test_crash_after_a_checkin_dm_sends_no_second_one_for_that_slot(e2e, freeze):
    await go_live(e2e)
    command = await e2e.slash(
        "peercare checkin on",
        {"cadence": "daily", "time": "09:30", "timezone": "Europe/Berlin"},
        user=e2e.cast.alice,
        channel=e2e.cast.general,
    )
    await command.reply()
    async with e2e.database.session() as session:
        schedule = await session.scalar(select(CheckinSchedule))
    slot_time = utcnow()
    frozen = freeze(checkins, "mark_sent")  # the DM is sent; its message id is never recorded
    job = e2e.bot.scheduler.get_job(checkins.job_id(schedule.id))
    running = asyncio.create_task(job.func(*job.args, now=slot_time))
    await frozen.wait_reached()
    frozen.thaw()
    await e2e.restart_bot(crash=True)
    running.cancel()
    assert len(e2e.dms_to(e2e.cast.alice)) == 1

    # The rebuilt job runs again for the same slot (a restart within the minute): nothing is sent.
    job = e2e.bot.scheduler.get_job(checkins.job_id(schedule.id))
    assert await job.func(*job.args, now=slot_time + timedelta(seconds=30)) is False
    await e2e.settle()
    assert len(e2e.dms_to(e2e.cast.alice)) == 1
    async with e2e.database.session() as session:
        rows = list(await session.scalars(select(Checkin)))
    assert len(rows) == 1 and rows[0].dm_message_id is None
    # The next day's slot is a new check-in, without a "you missed one" note for a DM never confirmed.
    assert await job.func(*job.args, now=slot_time + timedelta(days=1)) is True
    nxt = await e2e.wait_for_dm(e2e.cast.alice, lambda dm: dm.id != e2e.dms_to(e2e.cast.alice)[0].id)
    assert "pause" not in nxt.content
