"""Every support-channel message ends in exactly one recorded outcome, even across crashes and replayed events.

A crash is emulated by holding one step (inference, or the outcome write) so the message is caught mid-way,
then killing the bot with ``restart_bot(crash=True)`` or ``runner.crash()``: no shutdown, no flushing. The
fresh bot finds the message still pending in ``message_inbox`` and fetches it from Discord again.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.db.models import InboxMessage, InboxOutcome, RiskAssessment, ScoredReply, utcnow
from bot.services import coaching_delivery, message_inbox, privacy
from tests.e2e._features import (
    coaching_on,
    count_rows,
    eventually,
    go_live,
    settings_for,
    wait_for_stored_reply,
)

# Fixture: SQLite's busy wait cut short (database fault tests); `write_lock` comes from conftest.py.
from tests.e2e.reliability.test_faults_database import short_sqlite_wait  # noqa: F401

pytestmark = pytest.mark.e2e

SEEKER_TEXT = "My exams are next week and I can't sleep."
REPLY_TEXT = "That sounds exhausting. What has the last week been like for you?"
OTHER_REPLY = "I'm sorry, that sounds like a lot to carry right now."


@pytest.fixture
def e2e_settings(e2e_inference_config):
    return settings_for(e2e_inference_config)


class Count:
    """Count the calls to ``owner.<name>`` (an async callable) and pass them through unchanged."""

    def __init__(self, owner: object, name: str) -> None:
        self.owner, self.name = owner, name
        self.original = getattr(owner, name)
        self.calls: list[Any] = []

        async def counted(*args: object, **kwargs: object) -> object:
            self.calls.append(args[0] if args else kwargs)
            return await self.original(*args, **kwargs)

        setattr(owner, name, counted)

    def restore(self) -> None:
        setattr(self.owner, self.name, self.original)


async def _outcome(e2e, message_id: int) -> tuple[InboxOutcome, str | None] | None:  # type: ignore[no-untyped-def]
    async with e2e.database.session() as session:
        return await message_inbox.outcome_of(session, message_id)


async def _wait_for_outcome(e2e, message_id: int) -> tuple[InboxOutcome, str | None]:  # type: ignore[no-untyped-def]
    async def finished() -> tuple[InboxOutcome, str | None] | None:
        found = await _outcome(e2e, message_id)
        return found if found is not None and found[0] is not InboxOutcome.PENDING else None

    return await eventually(finished, what=f"message {message_id} to get its outcome")


async def _counts(e2e) -> dict[str, int]:  # type: ignore[no-untyped-def]
    async with e2e.database.session() as session:
        return await message_inbox.outcome_counts(session)


async def _inbox_row(e2e, message_id: int) -> InboxMessage | None:  # type: ignore[no-untyped-def]
    async with e2e.database.session() as session:
        return await session.get(InboxMessage, message_id)


def _inference(e2e):  # type: ignore[no-untyped-def]
    return e2e.bot.get_cog("Replies").pipeline.inference


async def _delete_seen(e2e, message) -> None:  # type: ignore[no-untyped-def]
    """Wait until the bot has taken a delete in (while the message's scoring is held)."""
    pipeline = e2e.bot.get_cog("Replies").pipeline

    async def seen() -> bool:
        return pipeline.is_deleted(message.id)

    await eventually(seen, what="the bot to take the delete in")


async def _scored_post(e2e):  # type: ignore[no-untyped-def]
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)
    assert await _wait_for_outcome(e2e, post.id) == (InboxOutcome.SCORED, None)
    return post


async def test_post_received_but_not_scored_before_a_crash_is_scored_after_restart(e2e, hold):
    await go_live(e2e)
    held = hold(_inference(e2e), "score_risk")
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)
    await held.wait_reached()
    row = await _inbox_row(e2e, post.id)
    assert row is not None and row.outcome is InboxOutcome.PENDING  # recorded before the slow work
    assert await count_rows(e2e, RiskAssessment) == 0
    await e2e.restart_bot(crash=True)
    assert await _wait_for_outcome(e2e, post.id) == (InboxOutcome.SCORED, None)
    assert await count_rows(e2e, RiskAssessment, RiskAssessment.message_id == post.id) == 1
    assert e2e.requests.find(method="GET", path=f"/channels/{e2e.cast.support.id}/messages/{post.id}")
    row = await _inbox_row(e2e, post.id)
    assert row is not None and (row.kind, row.attempts) == ("post", 2)


async def test_reply_pending_at_crash_gets_one_coaching_dm_after_restart(e2e, hold):
    await go_live(e2e)
    await coaching_on(e2e, e2e.cast.bob)
    post = await _scored_post(e2e)
    held = hold(_inference(e2e), "score_reply")
    reply = await e2e.say(e2e.cast.support, e2e.cast.bob, REPLY_TEXT, reply_to=post)
    await held.wait_reached()
    await e2e.restart_bot(crash=True)
    await e2e.wait_for_dm(e2e.cast.bob, timeout=15.0)
    assert await _wait_for_outcome(e2e, reply.id) == (InboxOutcome.SCORED, None)
    await e2e.settle()
    assert len(e2e.dms_to(e2e.cast.bob)) == 1
    assert await count_rows(e2e, ScoredReply) == 1


async def test_reply_coached_but_not_recorded_before_a_crash_is_not_coached_again(e2e, hold):
    await go_live(e2e)
    await coaching_on(e2e, e2e.cast.bob)
    post = await _scored_post(e2e)
    held = hold(message_inbox, "mark_scored")  # scored, stored and coached; the outcome never written
    reply = await e2e.say(e2e.cast.support, e2e.cast.bob, REPLY_TEXT, reply_to=post)
    await held.wait_reached()
    await e2e.wait_for_dm(e2e.cast.bob, timeout=15.0)
    await wait_for_stored_reply(e2e, reply.id, where=lambda r: r.coaching_status == "sent")
    assert (await _inbox_row(e2e, reply.id)).outcome is InboxOutcome.PENDING  # type: ignore[union-attr]
    held.release()
    await e2e.restart_bot(crash=True)
    assert await _wait_for_outcome(e2e, reply.id) == (InboxOutcome.SCORED, None)
    await e2e.settle()
    assert len(e2e.dms_to(e2e.cast.bob)) == 1
    assert await count_rows(e2e, ScoredReply) == 1


async def test_reply_stored_but_never_coached_before_a_crash_gets_its_note_after_restart(e2e, hold):
    await go_live(e2e)
    await coaching_on(e2e, e2e.cast.bob)
    post = await _scored_post(e2e)
    coaching = hold(coaching_delivery, "plan_for_new_reply")
    recording = hold(message_inbox, "mark_scored")
    reply = await e2e.say(e2e.cast.support, e2e.cast.bob, REPLY_TEXT, reply_to=post)
    await coaching.wait_reached()
    await recording.wait_reached()
    await wait_for_stored_reply(e2e, reply.id, where=lambda r: r.coaching_status == "pending")
    coaching.release()
    recording.release()
    await e2e.restart_bot(crash=True)
    await e2e.wait_for_dm(e2e.cast.bob, timeout=15.0)
    assert await _wait_for_outcome(e2e, reply.id) == (InboxOutcome.SCORED, None)
    await e2e.settle()
    assert len(e2e.dms_to(e2e.cast.bob)) == 1


async def test_message_deleted_while_bot_was_down_ends_skipped_deleted(e2e, hold):
    await go_live(e2e)
    held = hold(_inference(e2e), "score_risk")
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)
    await held.wait_reached()
    await e2e.runner.crash()
    await e2e.delete(post)  # nobody is connected to hear it
    await e2e.runner.start()
    assert await _wait_for_outcome(e2e, post.id) == (InboxOutcome.SKIPPED, "deleted")
    assert await count_rows(e2e, RiskAssessment) == 0


async def test_message_deleted_before_it_was_scored_ends_skipped_deleted(e2e, hold):
    await go_live(e2e)
    post = await _scored_post(e2e)
    held = hold(_inference(e2e), "score_reply")
    reply = await e2e.say(e2e.cast.support, e2e.cast.bob, REPLY_TEXT, reply_to=post)
    await held.wait_reached()
    await e2e.delete(reply)
    await _delete_seen(e2e, reply)
    held.release()
    assert await _wait_for_outcome(e2e, reply.id) == (InboxOutcome.SKIPPED, "deleted")
    await e2e.settle()
    assert await _outcome(e2e, reply.id) == (InboxOutcome.SKIPPED, "deleted")


async def test_every_support_message_gets_exactly_one_outcome(e2e, hold):
    await go_live(e2e)
    cast = e2e.cast
    post = await _scored_post(e2e)
    reply = await e2e.say(cast.support, cast.bob, REPLY_TEXT, reply_to=post)
    empty = await e2e.say(cast.support, cast.carol, "\u200b  \u200b")
    photo = await e2e.say(cast.support, cast.carol, "", attachments=["photo.png"])
    bot_post = await e2e.say(cast.support, cast.other_bot, "Reminder: be kind.")
    to_bot = await e2e.say(cast.support, cast.bob, OTHER_REPLY, reply_to=bot_post)
    elsewhere = await e2e.say(cast.general, cast.alice, SEEKER_TEXT)
    in_thread = await e2e.say(cast.support_thread, cast.bob, OTHER_REPLY)
    held = hold(_inference(e2e), "score_reply")
    deleted = await e2e.say(cast.support, cast.carol, OTHER_REPLY, reply_to=post)
    await held.wait_reached()
    await e2e.delete(deleted)
    await _delete_seen(e2e, deleted)
    held.release()

    expected = {
        post.id: (InboxOutcome.SCORED, None),
        reply.id: (InboxOutcome.SCORED, None),
        empty.id: (InboxOutcome.SKIPPED, "empty"),
        photo.id: (InboxOutcome.SKIPPED, "attachment_only"),
        to_bot.id: (InboxOutcome.SKIPPED, "parent_is_bot"),
        in_thread.id: (InboxOutcome.SCORED, None),
        deleted.id: (InboxOutcome.SKIPPED, "deleted"),
    }
    for message_id, outcome in expected.items():
        assert await _wait_for_outcome(e2e, message_id) == outcome, message_id
    await e2e.settle()
    async with e2e.database.session() as session:
        recorded = set(await session.scalars(select(InboxMessage.message_id)))
    assert recorded == set(expected)  # the bot's post and #general are never recorded
    assert bot_post.id not in recorded and elsewhere.id not in recorded
    assert await _counts(e2e) == {"pending": 0, "scored": 3, "skipped": 4}


async def test_replayed_event_is_not_scored_twice(e2e):
    await go_live(e2e)
    await coaching_on(e2e, e2e.cast.bob)
    post = await _scored_post(e2e)
    calls = Count(_inference(e2e), "score_reply")
    try:
        reply = await e2e.say(e2e.cast.support, e2e.cast.bob, REPLY_TEXT, reply_to=post)
        await e2e.wait_for_dm(e2e.cast.bob, timeout=15.0)
        assert await _wait_for_outcome(e2e, reply.id) == (InboxOutcome.SCORED, None)
        # The gateway delivers the same MESSAGE_CREATE again (as after a RESUME that replays seen events).
        await e2e.server.dispatch_message("MESSAGE_CREATE", reply, e2e.cast.support)
        await e2e.server.dispatch_message("MESSAGE_CREATE", post, e2e.cast.support)
        await e2e.settle()
    finally:
        calls.restore()
    assert len(calls.calls) == 1
    assert len(e2e.dms_to(e2e.cast.bob)) == 1
    assert await count_rows(e2e, RiskAssessment, RiskAssessment.message_id == post.id) == 1
    assert await _counts(e2e) == {"pending": 0, "scored": 2, "skipped": 0}


async def test_event_replayed_while_the_first_is_scored_is_scored_once(e2e, hold):
    await go_live(e2e)
    await coaching_on(e2e, e2e.cast.bob)
    post = await _scored_post(e2e)
    held = hold(_inference(e2e), "score_reply")
    reply = await e2e.say(e2e.cast.support, e2e.cast.bob, REPLY_TEXT, reply_to=post)
    await held.wait_reached()
    calls = Count(_inference(e2e), "score_reply")  # counts calls made from now on, the held one excluded
    try:
        await e2e.server.dispatch_message("MESSAGE_CREATE", reply, e2e.cast.support)
        await e2e.settle()
        held.release()
        await e2e.wait_for_dm(e2e.cast.bob, timeout=15.0)
        assert await _wait_for_outcome(e2e, reply.id) == (InboxOutcome.SCORED, None)
        await e2e.settle()
    finally:
        calls.restore()
    assert calls.calls == []
    assert len(e2e.dms_to(e2e.cast.bob)) == 1
    assert (await _inbox_row(e2e, reply.id)).attempts == 1  # type: ignore[union-attr]


async def test_message_that_keeps_failing_ends_skipped_failed_without_its_text_in_logs(e2e, caplog):
    e2e.expect_errors()
    await go_live(e2e)
    post = await _scored_post(e2e)
    replies = e2e.bot.get_cog("Replies")

    async def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("scoring is broken")

    original = replies.pipeline.score_reply
    replies.pipeline.score_reply = broken
    try:
        reply = await e2e.say(e2e.cast.support, e2e.cast.bob, REPLY_TEXT, reply_to=post)
        await eventually(lambda: _inbox_row(e2e, reply.id), what="the reply to be recorded")
        await e2e.settle()
        assert (await _outcome(e2e, reply.id)) == (InboxOutcome.PENDING, None)
        for _ in range(message_inbox.MAX_ATTEMPTS):
            await replies.recover_pending(received_before=_far_future())
    finally:
        replies.pipeline.score_reply = original
    assert await _outcome(e2e, reply.id) == (InboxOutcome.SKIPPED, "failed")
    warnings = [
        r for r in caplog.records if r.name == "bot.services.message_inbox" and r.levelname == "WARNING"
    ]
    assert len(warnings) == 1 and str(reply.id) in warnings[0].getMessage()
    assert all(REPLY_TEXT not in r.getMessage() for r in caplog.records)
    await replies.recover_pending(received_before=_far_future())
    assert await _outcome(e2e, reply.id) == (InboxOutcome.SKIPPED, "failed")  # never a second outcome


def _far_future() -> datetime:
    """A sweep cut-off past every message, so the test need not wait out the sweep's grace period."""
    return utcnow() + timedelta(minutes=5)


async def test_backlog_larger_than_one_page_is_all_recovered_at_start(e2e, hold, monkeypatch):
    monkeypatch.setattr(message_inbox, "RECOVERY_PAGE_SIZE", 2)
    pages: list[int] = []
    read_page = message_inbox.pending

    async def counted_page(*args, **kwargs):  # type: ignore[no-untyped-def]
        rows = await read_page(*args, **kwargs)
        pages.append(len(rows))
        return rows

    monkeypatch.setattr(message_inbox, "pending", counted_page)
    await go_live(e2e)
    held = hold(_inference(e2e), "score_risk")
    posts = [await e2e.say(e2e.cast.support, author, SEEKER_TEXT) for author in e2e.cast.members]
    await held.wait_reached()
    await eventually(lambda: _pending_count(e2e, len(posts)), what="every post to be recorded")
    await e2e.restart_bot(crash=True)
    for post in posts:
        assert await _wait_for_outcome(e2e, post.id) == (InboxOutcome.SCORED, None)
    assert len(posts) > 2 and max(pages) == 2  # the backlog really took more than one page


async def _pending_count(e2e, expected: int) -> bool:  # type: ignore[no-untyped-def]
    return (await _counts(e2e))["pending"] == expected


async def test_member_leaving_takes_their_inbox_rows_with_them(e2e):
    await go_live(e2e)
    post = await _scored_post(e2e)
    reply = await e2e.say(e2e.cast.support, e2e.cast.bob, REPLY_TEXT, reply_to=post)
    await _wait_for_outcome(e2e, reply.id)
    await e2e.remove_member(e2e.cast.alice)

    async def alice_gone() -> bool:
        return await _inbox_row(e2e, post.id) is None

    await eventually(alice_gone, what="alice's inbox row to be deleted")
    assert await _inbox_row(e2e, reply.id) is not None


async def test_retention_job_deletes_finished_inbox_rows_past_retention(e2e, hold):
    await go_live(e2e)
    post = await _scored_post(e2e)
    held = hold(_inference(e2e), "score_reply")
    reply = await e2e.say(e2e.cast.support, e2e.cast.bob, REPLY_TEXT, reply_to=post)
    await held.wait_reached()
    await e2e.bot.get_cog("Privacy").run_retention(utcnow() + timedelta(days=8))
    assert await _inbox_row(e2e, post.id) is None
    assert await _inbox_row(e2e, reply.id) is not None  # still owes an outcome
    held.release()
    assert await _wait_for_outcome(e2e, reply.id) == (InboxOutcome.SCORED, None)


async def _forget_me(e2e, user) -> None:  # type: ignore[no-untyped-def]
    question = await (await e2e.slash("peercare forget-me", user=user, channel=e2e.cast.general)).reply()
    await e2e.click(question, f"peercare:forget:confirm:{user.id}", user=user)
    await e2e.wait_until(lambda: "Done" in question.content, 5, "the deletion to be confirmed")


async def test_reply_scored_while_its_author_runs_forget_me_is_not_stored_afterwards(e2e, hold):
    await go_live(e2e)
    post = await _scored_post(e2e)
    held = hold(_inference(e2e), "score_reply")
    reply = await e2e.say(e2e.cast.support, e2e.cast.bob, REPLY_TEXT, reply_to=post)
    await held.wait_reached()
    await _forget_me(e2e, e2e.cast.bob)
    held.release()
    await e2e.settle()
    assert await count_rows(e2e, ScoredReply) == 0
    assert await _inbox_row(e2e, reply.id) is None
    async with e2e.database.session() as session:
        assert await privacy.describe_member_data(session, e2e.cast.bob.id) == {}
    assert e2e.dms_to(e2e.cast.bob) == []


async def test_reply_stored_just_before_forget_me_is_deleted_by_it(e2e, hold):
    await go_live(e2e)
    post = await _scored_post(e2e)
    held = hold(message_inbox, "mark_scored")  # the reply is stored; its outcome write waits
    reply = await e2e.say(e2e.cast.support, e2e.cast.bob, REPLY_TEXT, reply_to=post)
    await held.wait_reached()
    await wait_for_stored_reply(e2e, reply.id)
    await _forget_me(e2e, e2e.cast.bob)
    held.release()
    await e2e.settle()
    assert await count_rows(e2e, ScoredReply) == 0
    assert await _inbox_row(e2e, reply.id) is None


async def test_post_scored_while_its_author_runs_forget_me_leaves_no_risk_row(e2e, hold):
    await go_live(e2e)
    held = hold(_inference(e2e), "score_risk")
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)
    await held.wait_reached()
    await _forget_me(e2e, e2e.cast.alice)
    held.release()
    await e2e.settle()
    assert await count_rows(e2e, RiskAssessment) == 0
    assert await _inbox_row(e2e, post.id) is None


class TestDatabaseLockedWhenAMessageArrives:
    """SQLite's own busy wait is cut to 100 ms, so the inbox's retries are what keeps the message."""

    @pytest.fixture
    def e2e_settings(self, e2e_inference_config, short_sqlite_wait: None) -> dict:  # noqa: F811
        return settings_for(e2e_inference_config)

    async def test_message_arriving_while_the_database_is_locked_is_recorded_and_scored(
        self,
        e2e,
        write_lock,
        caplog,
    ):
        await go_live(e2e)
        with caplog.at_level(logging.WARNING, logger="bot.db.session"):
            write_lock.take(hold_s=0.6)
            post = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)
            assert await _wait_for_outcome(e2e, post.id) == (InboxOutcome.SCORED, None)
        assert write_lock.released_at is not None
        assert "database unavailable (database is locked)" in caplog.text
        assert SEEKER_TEXT not in caplog.text


async def test_edited_reply_is_rescored_without_a_second_outcome(e2e):
    await go_live(e2e)
    await coaching_on(e2e, e2e.cast.bob)
    post = await _scored_post(e2e)
    reply = await e2e.say(e2e.cast.support, e2e.cast.bob, "Ugh, exams.", reply_to=post)
    await e2e.wait_for_dm(e2e.cast.bob, timeout=15.0)
    assert await _wait_for_outcome(e2e, reply.id) == (InboxOutcome.SCORED, None)
    first = await _inbox_row(e2e, reply.id)
    stored = await wait_for_stored_reply(e2e, reply.id)
    await e2e.edit(reply, REPLY_TEXT)
    await wait_for_stored_reply(e2e, reply.id, where=lambda r: r.content_hash != stored.content_hash)
    await e2e.settle()
    again = await _inbox_row(e2e, reply.id)
    assert first is not None and again is not None
    assert (again.outcome, again.finished_at, again.attempts) == (first.outcome, first.finished_at, 1)
    assert await _counts(e2e) == {"pending": 0, "scored": 2, "skipped": 0}
    assert len(e2e.dms_to(e2e.cast.bob)) == 1


async def test_message_whose_processing_failed_once_is_scored_by_the_next_sweep(e2e):
    e2e.expect_errors()  # the failed attempt is logged with its traceback
    await go_live(e2e)
    post = await _scored_post(e2e)
    replies = e2e.bot.get_cog("Replies")
    original = replies.pipeline.score_reply
    failures = 0

    async def fails_once(*args: object, **kwargs: object) -> object:
        nonlocal failures
        failures += 1
        if failures == 1:
            raise RuntimeError("a passing failure")
        return await original(*args, **kwargs)

    replies.pipeline.score_reply = fails_once
    try:
        reply = await e2e.say(e2e.cast.support, e2e.cast.bob, REPLY_TEXT, reply_to=post)
        await eventually(lambda: _inbox_row(e2e, reply.id), what="the reply to be recorded")
        await e2e.settle()
        assert await _outcome(e2e, reply.id) == (InboxOutcome.PENDING, None)  # not lost: waiting
        await replies.recover_pending(received_before=_far_future())
    finally:
        replies.pipeline.score_reply = original
    assert await _outcome(e2e, reply.id) == (InboxOutcome.SCORED, None)
    assert await count_rows(e2e, ScoredReply, ScoredReply.reply_message_id == reply.id) == 1
    assert [r.name for r in e2e.logged_errors()] == ["bot.services.message_intake"]
