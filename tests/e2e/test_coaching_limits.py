"""Rate limits: one note per interval, a daily cap, and a digest for the replies that waited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.db.models import CoachingDelivery
from tests.e2e._features import coaching_on, go_live, settings_for, wait_for_stored_reply

pytestmark = pytest.mark.e2e

SEEKER_TEXT = "My exams are next week and I can't sleep."


@pytest.fixture
def e2e_settings(e2e_inference_config):
    return settings_for(e2e_inference_config)


async def _reply(e2e, text: str):
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)
    reply = await e2e.say(e2e.cast.support, e2e.cast.bob, text, reply_to=post)
    await wait_for_stored_reply(e2e, reply.id, where=lambda r: r.coaching_status != "pending")
    return reply


async def _an_hour_passes(e2e) -> None:
    async with e2e.database.session() as session:
        for delivery in await session.scalars(select(CoachingDelivery)):
            delivery.sent_at -= timedelta(hours=1)


def _run_flush_job_now(e2e) -> None:
    e2e.bot.scheduler.get_job("coaching-flush").modify(next_run_time=datetime.now(UTC))


async def test_coaching_rate_limit_sends_digest(e2e):
    await go_live(e2e, coaching_interval_minutes=30)
    await coaching_on(e2e, e2e.cast.bob)
    await _reply(e2e, "That sounds exhausting.")
    await e2e.wait_for_dm(e2e.cast.bob, timeout=15.0)
    second = await _reply(e2e, "I'm sorry, that sounds really hard.")
    third = await _reply(e2e, "You are not alone in this.")
    await e2e.settle()
    assert len(e2e.dms_to(e2e.cast.bob)) == 1  # the interval holds the others back

    await _an_hour_passes(e2e)
    _run_flush_job_now(e2e)
    digest = await e2e.wait_for_dm(e2e.cast.bob, timeout=15.0)
    assert "You wrote 2 replies" in digest.content
    assert second.jump_url_path in digest.content and third.jump_url_path in digest.content
    assert digest.content.count("One thing to try") == 1
    await e2e.settle()
    assert len(e2e.dms_to(e2e.cast.bob)) == 2


async def test_daily_cap_holds_notes_back(e2e):
    await go_live(e2e, coaching_interval_minutes=0, coaching_daily_cap=1)
    await coaching_on(e2e, e2e.cast.bob)
    await _reply(e2e, "That sounds exhausting.")
    await e2e.wait_for_dm(e2e.cast.bob, timeout=15.0)
    waiting = await _reply(e2e, "I'm sorry, that sounds really hard.")
    _run_flush_job_now(e2e)
    await e2e.settle()
    assert len(e2e.dms_to(e2e.cast.bob)) == 1
    row = await wait_for_stored_reply(e2e, waiting.id)
    assert row.coaching_status == "queued"
