"""A message whose arrival cannot be recorded (database unavailable past every retry) is kept and retried."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.exc import TimeoutError as PoolTimeout

from bot.db.models import InboxOutcome, RiskAssessment
from bot.services import message_inbox
from tests.e2e._features import count_rows, eventually, go_live, settings_for

pytestmark = pytest.mark.e2e

SEEKER_TEXT = "My exams are next week and I can't sleep."


@pytest.fixture
def e2e_settings(e2e_inference_config):
    return settings_for(e2e_inference_config)


@pytest.fixture
def pool_exhausted(monkeypatch: pytest.MonkeyPatch):
    """``record_received`` fails as an exhausted connection pool does, until ``state["failing"]`` is False."""
    state = {"failing": True, "calls": 0}
    original = message_inbox.record_received

    async def record_received(*args, **kwargs):  # type: ignore[no-untyped-def]
        state["calls"] += 1
        if state["failing"]:
            raise PoolTimeout("QueuePool limit of size 5 overflow 10 reached, connection timed out")
        return await original(*args, **kwargs)

    monkeypatch.setattr(message_inbox, "record_received", record_received)
    return state


async def _outcome(e2e, message_id: int):  # type: ignore[no-untyped-def]
    async with e2e.database.session() as session:
        return await message_inbox.outcome_of(session, message_id)


async def test_message_that_could_not_be_recorded_is_kept_and_scored_by_the_next_sweep(
    e2e, pool_exhausted, caplog
):
    await go_live(e2e)
    caplog.set_level(logging.WARNING, logger="cogs.replies")
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)

    def kept() -> bool:
        return any("could not be recorded" in r.getMessage() for r in caplog.records)

    await e2e.wait_until(kept, 15, "the unrecorded arrival to be logged")
    assert pool_exhausted["calls"] >= 2  # Database.run retried before giving up
    assert await _outcome(e2e, post.id) is None

    pool_exhausted["failing"] = False
    await e2e.bot.get_cog("Replies")._scheduled_recovery()

    async def scored():  # type: ignore[no-untyped-def]
        found = await _outcome(e2e, post.id)
        return found is not None and found[0] is InboxOutcome.SCORED

    await eventually(scored, what="the kept message to be recorded and scored")
    assert await count_rows(e2e, RiskAssessment, RiskAssessment.message_id == post.id) == 1
    assert str(post.id) in next(
        r.getMessage() for r in caplog.records if "could not be recorded" in r.getMessage()
    )
    assert SEEKER_TEXT not in caplog.text


async def test_a_sweep_during_the_outage_keeps_the_message_for_the_next_one(e2e, pool_exhausted, caplog):
    await go_live(e2e)
    caplog.set_level(logging.WARNING, logger="cogs.replies")
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)
    await e2e.wait_until(
        lambda: any("could not be recorded" in r.getMessage() for r in caplog.records),
        15,
        "the first failure",
    )
    replies = e2e.bot.get_cog("Replies")
    await replies._scheduled_recovery()  # still failing: kept
    assert any("still cannot be recorded" in r.getMessage() for r in caplog.records)
    pool_exhausted["failing"] = False
    await replies._scheduled_recovery()

    async def scored():  # type: ignore[no-untyped-def]
        found = await _outcome(e2e, post.id)
        return found is not None and found[0] is InboxOutcome.SCORED

    await eventually(scored, what="the message to be scored once the pool is back")
