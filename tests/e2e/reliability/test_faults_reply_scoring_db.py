"""A reply and a crisis post are scored while the database is locked past SQLite's own wait: nothing is lost.

Another connection takes SQLite's write lock (``BEGIN EXCLUSIVE``) the moment the models have answered both
messages, so the writes that store the post's risk and the reply's score meet it. SQLite's busy wait is cut
to 100 ms before the bot opens a connection, so ``Database.run`` (re-running the store, never the models) is
what saves the work. A lock that outlasts every retry leaves the message pending, with a WARNING, for the
inbox recovery sweep.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from bot.db import session as db_session
from bot.db.models import (
    EscalationConsent,
    EscalationState,
    InboxOutcome,
    RiskAssessment,
    ScoredReply,
    utcnow,
)
from bot.services import message_inbox
from tests.e2e._features import coaching_on, count_rows, settings_for
from tests.e2e.reliability.test_faults_database import WriteLock
from tests.e2e.safety_support import CRISIS_POST, alerts, go_live, post_crisis, wait_for_case

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e

REPLY_TEXT = "That sounds exhausting. I'm here for you."
# Well inside the retries' backoff (about 1.75 s and more over four attempts), far past SQLite's 100 ms.
LOCK_HELD_S = 0.8


@pytest.fixture
def e2e_settings(e2e_inference_config, monkeypatch: pytest.MonkeyPatch) -> dict:
    """SQLite gives up on a lock after 100 ms instead of 5 s (set before the bot opens a connection)."""
    monkeypatch.setattr(db_session, "SQLITE_BUSY_TIMEOUT_MS", 100)
    return settings_for(e2e_inference_config)


def _lock_once_answered(e2e: Any, monkeypatch: pytest.MonkeyPatch, lock: WriteLock, *, answers: int, hold_s):  # type: ignore[no-untyped-def]
    """The real models answer; once ``answers`` calls have, the lock is taken before any of them is stored."""
    inference = e2e.bot.get_cog("Replies").pipeline.inference
    answered: list[str] = []
    all_in = asyncio.Event()

    def wrap(name: str) -> None:
        original = getattr(inference, name)

        async def answer_then_lock(request):  # type: ignore[no-untyped-def]
            result = await original(request)
            answered.append(name)
            if len(answered) == answers:
                lock.take(hold_s)
                all_in.set()
            else:
                await asyncio.wait_for(all_in.wait(), 30)
            return result

        monkeypatch.setattr(inference, name, answer_then_lock)

    wrap("score_risk")
    wrap("score_reply")
    return answered


async def _outcome(e2e: Any, message_id: int) -> tuple[InboxOutcome, str | None] | None:
    async with e2e.database.session() as session:
        return await message_inbox.outcome_of(session, message_id)


async def _finished(e2e: Any, message_id: int) -> bool:
    """The message has its outcome (an inbox row that is no longer pending)."""
    found = await _outcome(e2e, message_id)
    return found is not None and found[0] is not InboxOutcome.PENDING


def _retried(caplog: pytest.LogCaptureFixture, operation: str) -> bool:
    return f"during {operation}: attempt 1 of 4 failed" in caplog.text


async def test_a_reply_and_a_crisis_post_stored_during_a_lock_end_once_each(
    e2e, write_lock, caplog, monkeypatch
):
    await go_live(e2e, EscalationConsent.YES)
    await coaching_on(e2e, e2e.cast.bob)
    answered = _lock_once_answered(e2e, monkeypatch, write_lock, answers=2, hold_s=LOCK_HELD_S)
    with caplog.at_level(logging.INFO):
        post = await post_crisis(e2e)
        reply = await e2e.say(e2e.cast.support, e2e.cast.bob, REPLY_TEXT, reply_to=post)
        case = await wait_for_case(e2e, EscalationState.ALERTED, timeout=30)
        for message in (post, reply):
            await e2e.eventually(lambda m=message: _finished(e2e, m.id), timeout=30, what="an outcome")
        await e2e.wait_until(lambda: e2e.dms_to(e2e.cast.bob) or None, 30, "a coaching DM")
        await e2e.settle()
    # The models ran once per request: the post's risk, the reply's score and the reply's own risk.
    assert sorted(answered) == ["score_reply", "score_risk", "score_risk"]
    # Both stores may open Alice's case, so they take her case lock in turn: the one that waits for it may
    # find the database free again. At least the first ran into the lock and was retried.
    assert _retried(caplog, f"store the risk of post {post.id}") or _retried(
        caplog, f"store the score of reply {reply.id}"
    )
    assert await _outcome(e2e, post.id) == (InboxOutcome.SCORED, None)
    assert await _outcome(e2e, reply.id) == (InboxOutcome.SCORED, None)
    assert await count_rows(e2e, RiskAssessment, RiskAssessment.message_id == post.id) == 1
    assert await count_rows(e2e, ScoredReply, ScoredReply.reply_message_id == reply.id) == 1
    assert len(alerts(e2e)) == 1 and case.alert_message_id == alerts(e2e)[0].id
    assert len(e2e.dms_to(e2e.cast.bob)) == 1
    assert e2e.logged_errors() == []
    assert CRISIS_POST not in caplog.text and REPLY_TEXT not in caplog.text


async def test_a_post_whose_store_outlasts_every_retry_is_left_for_the_sweep_and_alerted_once(
    e2e, write_lock, caplog, monkeypatch
):
    await go_live(e2e, EscalationConsent.YES)
    _lock_once_answered(e2e, monkeypatch, write_lock, answers=1, hold_s=None)
    with caplog.at_level(logging.INFO):
        post = await post_crisis(e2e)
        await e2e.wait_until(
            lambda: (
                f"message {post.id} (attempt 1) left pending for the recovery sweep" in caplog.text or None
            ),
            30,
            "the message to be left for the sweep",
        )
        write_lock.release()
        assert await _outcome(e2e, post.id) == (InboxOutcome.PENDING, None)
        assert alerts(e2e) == []

        await e2e.bot.get_cog("Replies").recover_pending(received_before=utcnow())
        case = await wait_for_case(e2e, EscalationState.ALERTED, timeout=30)
        await e2e.settle()
    assert f"during store the risk of post {post.id}: giving up after 4 attempts" in caplog.text
    assert await _outcome(e2e, post.id) == (InboxOutcome.SCORED, None)
    assert await count_rows(e2e, RiskAssessment, RiskAssessment.message_id == post.id) == 1
    assert len(alerts(e2e)) == 1 and case.alert_message_id == alerts(e2e)[0].id
    assert e2e.logged_errors() == []
    assert CRISIS_POST not in caplog.text
