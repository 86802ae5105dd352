"""Messages posted while the bot was down are read from history after READY and take the live path once.

Discord does not replay gateway events to a new session: the bot is stopped (``e2e.runner.stop()``), members
post in #support with nobody connected, and the fresh bot must find those posts through
``GET /channels/{id}/messages``. Bounds and anchors: ``bot/services/catch_up.py``.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.db.models import InboxOutcome, RiskAssessment, ScoredReply
from bot.services import catch_up, message_inbox
from tests.e2e._features import coaching_on, count_rows, eventually, settings_for
from tests.e2e.reliability.test_inbox_recovery import (
    REPLY_TEXT,
    SEEKER_TEXT,
    Count,
    _forget_me,
    _inbox_row,
    _inference,
    _outcome,
    _wait_for_outcome,
)
from tests.e2e.safety_support import alerts, go_live, post_crisis, wait_for_alert

pytestmark = pytest.mark.e2e

HISTORY = "/channels/{channel_id}/messages"


@pytest.fixture
def e2e_settings(e2e_inference_config):
    return settings_for(e2e_inference_config)


def _history_reads(e2e, channel) -> list:  # type: ignore[no-untyped-def]
    return e2e.requests.find(method="GET", route=HISTORY, path=f"/channels/{channel.id}/messages")


async def _live_post(e2e, author, text: str = SEEKER_TEXT):  # type: ignore[no-untyped-def]
    post = await e2e.say(e2e.cast.support, author, text)
    assert await _wait_for_outcome(e2e, post.id) == (InboxOutcome.SCORED, None)
    return post


async def test_post_made_while_the_bot_was_down_is_scored_and_escalated_after_restart(e2e):
    await go_live(e2e)
    await _live_post(e2e, e2e.cast.bob)  # the inbox has seen #support: the anchor is this post
    await e2e.runner.stop()
    post = await post_crisis(e2e)  # nobody is connected to hear it
    await e2e.runner.start()
    alert = await wait_for_alert(e2e, timeout=15.0)
    assert await _wait_for_outcome(e2e, post.id) == (InboxOutcome.SCORED, None)
    await e2e.settle()
    assert alerts(e2e) == [alert]
    assert await count_rows(e2e, RiskAssessment, RiskAssessment.message_id == post.id) == 1
    assert _history_reads(e2e, e2e.cast.support)


async def test_reply_made_while_down_gets_one_outcome(e2e):
    await go_live(e2e)
    await coaching_on(e2e, e2e.cast.bob)
    post = await _live_post(e2e, e2e.cast.alice)
    await e2e.runner.stop()
    reply = await e2e.say(e2e.cast.support, e2e.cast.bob, REPLY_TEXT, reply_to=post)
    await e2e.runner.start()
    await e2e.wait_for_dm(e2e.cast.bob, timeout=15.0)  # coached as a live reply would be
    assert await _wait_for_outcome(e2e, reply.id) == (InboxOutcome.SCORED, None)
    await e2e.restart_bot()  # a second catch-up over the same history changes nothing
    await e2e.settle()
    row = await _inbox_row(e2e, reply.id)
    assert row is not None and (row.outcome, row.kind, row.attempts) == (InboxOutcome.SCORED, "reply", 1)
    assert await count_rows(e2e, ScoredReply, ScoredReply.reply_message_id == reply.id) == 1
    assert len(e2e.dms_to(e2e.cast.bob)) == 1
    async with e2e.database.session() as session:
        assert await message_inbox.outcome_counts(session) == {"pending": 0, "scored": 2, "skipped": 0}


async def test_catch_up_does_not_backfill_history_from_before_the_channel_was_opted_in(e2e):
    before = [await e2e.say(e2e.cast.support, member, SEEKER_TEXT) for member in e2e.cast.members]
    await e2e.settle()
    await go_live(e2e)  # #support had history, but the inbox has no row for it yet
    await e2e.runner.stop()
    while_down = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)
    await e2e.runner.start()
    assert await _wait_for_outcome(e2e, while_down.id) == (InboxOutcome.SCORED, None)
    await e2e.settle()
    for old in [*before, e2e.cast.thread_starter]:
        assert await _outcome(e2e, old.id) is None
    assert await count_rows(e2e, RiskAssessment) == 1


async def test_message_seen_live_during_catch_up_is_processed_once(e2e, hold):
    await go_live(e2e)
    await _live_post(e2e, e2e.cast.bob)
    await e2e.runner.stop()
    while_down = await e2e.say(e2e.cast.support, e2e.cast.carol, SEEKER_TEXT)
    # A service function: the bot loads cogs.replies afresh as an extension, so its class cannot be patched.
    catching_up = hold(catch_up, "range_for")
    await e2e.runner.start()
    await catching_up.wait_reached()
    calls = Count(_inference(e2e), "score_risk")
    scoring = hold(_inference(e2e), "score_risk")
    try:
        live = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)  # after READY: a live event
        await scoring.wait_reached()
        catching_up.release()  # history now holds both; the live one is still being scored
        await eventually(lambda: _inbox_row(e2e, while_down.id), what="the missed post to be recorded")
        # ...and, while catch-up scores the missed post, its gateway event arrives late after all.
        await e2e.server.dispatch_message("MESSAGE_CREATE", while_down, e2e.cast.support)
        await e2e.settle()
        scoring.release()
        assert await _wait_for_outcome(e2e, live.id) == (InboxOutcome.SCORED, None)
        assert await _wait_for_outcome(e2e, while_down.id) == (InboxOutcome.SCORED, None)
        await e2e.settle()
    finally:
        calls.restore()
    assert len(calls.calls) == 2  # the live post and the missed one, each once
    assert (await _inbox_row(e2e, live.id)).attempts == 1  # type: ignore[union-attr]
    assert (await _inbox_row(e2e, while_down.id)).attempts == 1  # type: ignore[union-attr]
    assert await count_rows(e2e, RiskAssessment, RiskAssessment.message_id == live.id) == 1


async def test_catch_up_is_bounded(e2e, monkeypatch, caplog):
    monkeypatch.setattr(catch_up, "CATCH_UP_MAX_MESSAGES", 2)
    await go_live(e2e)
    await _live_post(e2e, e2e.cast.bob)
    await e2e.runner.stop()
    posted = [await e2e.say(e2e.cast.support, member, SEEKER_TEXT) for member in e2e.cast.members]
    posted.append(await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT))
    with caplog.at_level(logging.INFO, logger="cogs.replies"):
        await e2e.runner.start()
        for newest in posted[-2:]:
            assert await _wait_for_outcome(e2e, newest.id) == (InboxOutcome.SCORED, None)
        await e2e.settle()
    for oldest in posted[:-2]:
        assert await _outcome(e2e, oldest.id) is None  # left: the newest two were taken
    warnings = [
        r.getMessage() for r in caplog.records if r.name == "cogs.replies" and r.levelname == "WARNING"
    ]
    assert warnings == [
        f"catch-up in {e2e.cast.support.id}: more than 2 messages were posted while the bot was away; "
        "the newest 2 are processed, older ones are left"
    ]
    (summary,) = [r.getMessage() for r in caplog.records if "catch-up in channel" in r.getMessage()]
    assert "2 messages read, 2 new" in summary
    assert SEEKER_TEXT not in caplog.text


async def test_history_that_cannot_be_read_is_a_warning_and_the_threads_are_still_read(e2e, caplog):
    from tests.discord_server import faults

    await go_live(e2e)
    await _live_post(e2e, e2e.cast.bob)
    await e2e.runner.stop()
    in_thread = await e2e.say(e2e.cast.support_thread, e2e.cast.carol, SEEKER_TEXT)
    e2e.faults.next_request(
        faults.missing_access(), method="GET", path=f"/channels/{e2e.cast.support.id}/messages"
    )
    with caplog.at_level(logging.WARNING, logger="cogs.replies"):
        await e2e.runner.start()
        assert await _wait_for_outcome(e2e, in_thread.id) == (InboxOutcome.SCORED, None)
        await e2e.settle()
    warnings = [
        r.getMessage() for r in caplog.records if r.name == "cogs.replies" and r.levelname == "WARNING"
    ]
    assert warnings == [f"catch-up: cannot read the history of {e2e.cast.support.id} (HTTP 403)"]
    assert _history_reads(e2e, e2e.cast.support_thread)


async def test_post_of_a_member_who_ran_forget_me_does_not_come_back_through_history(e2e):
    await go_live(e2e)
    await _live_post(e2e, e2e.cast.bob)
    erased = await _live_post(e2e, e2e.cast.alice)  # the newest message the inbox saw in #support...
    await _forget_me(e2e, e2e.cast.alice)  # ...until forget-me deleted its row
    await e2e.restart_bot()
    await e2e.settle()
    assert _history_reads(e2e, e2e.cast.support)
    assert await _outcome(e2e, erased.id) is None
    assert await count_rows(e2e, RiskAssessment, RiskAssessment.message_id == erased.id) == 0


async def test_thread_started_while_down_is_read_too(e2e):
    await go_live(e2e)
    await _live_post(e2e, e2e.cast.bob)
    await e2e.runner.stop()
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)
    thread = await e2e.start_thread(post, "exams")
    reply = await e2e.say(thread, e2e.cast.carol, REPLY_TEXT)
    await e2e.runner.start()  # GUILD_CREATE lists the thread among the active ones
    assert await _wait_for_outcome(e2e, post.id) == (InboxOutcome.SCORED, None)
    assert await _wait_for_outcome(e2e, reply.id) == (InboxOutcome.SCORED, None)
    assert (await _inbox_row(e2e, reply.id)).kind == "reply"  # type: ignore[union-attr]
    assert _history_reads(e2e, thread)


async def test_post_made_while_the_gateway_session_was_lost_is_caught_up_without_a_restart(e2e):
    await go_live(e2e)
    await _live_post(e2e, e2e.cast.bob)
    await e2e.gateway.invalidate_session(resumable=False)  # discord.py waits 5 s, then identifies afresh
    in_the_gap = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)  # no session hears it
    await e2e.wait_until(lambda: len(e2e.gateway.identifies) == 2, 10, "a second IDENTIFY")
    assert await _wait_for_outcome(e2e, in_the_gap.id) == (InboxOutcome.SCORED, None)
    assert (await _inbox_row(e2e, in_the_gap.id)).attempts == 1  # type: ignore[union-attr]


class TestWithoutRetention:
    """With 0 days of retention finished inbox rows go at once: nothing can tell a seen message from a new one."""

    @pytest.fixture
    def e2e_settings(self, e2e_inference_config) -> dict:
        return {**settings_for(e2e_inference_config), "message_retention_days": 0}

    async def test_catch_up_is_off_and_says_so(self, e2e, caplog):
        await go_live(e2e)
        await e2e.runner.stop()
        while_down = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)
        with caplog.at_level(logging.INFO, logger="cogs.replies"):
            await e2e.runner.start()
            await e2e.settle()
        assert "catch-up from history is off" in caplog.text
        assert not _history_reads(e2e, e2e.cast.support)
        assert await _outcome(e2e, while_down.id) is None


async def test_message_lost_in_a_crash_behind_a_newer_recorded_one_is_caught_up(e2e, monkeypatch):
    await go_live(e2e)
    original = message_inbox.record_received
    first_call, never = asyncio.Event(), asyncio.Event()

    async def first_one_never_recorded(*args: object, **kwargs: object) -> object:
        if not first_call.is_set():
            first_call.set()
            await never.wait()  # this message's event was received, then the process died
        return await original(*args, **kwargs)

    monkeypatch.setattr(message_inbox, "record_received", first_one_never_recorded)
    lost = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)
    await asyncio.wait_for(first_call.wait(), 15)
    newer = await _live_post(e2e, e2e.cast.bob)  # recorded: the newest row in #support
    await e2e.runner.crash()
    monkeypatch.setattr(message_inbox, "record_received", original)
    await e2e.runner.start()
    assert await _wait_for_outcome(e2e, lost.id) == (InboxOutcome.SCORED, None)
    await e2e.settle()
    assert (await _inbox_row(e2e, newer.id)).attempts == 1  # type: ignore[union-attr]
    assert await count_rows(e2e, RiskAssessment) == 2
