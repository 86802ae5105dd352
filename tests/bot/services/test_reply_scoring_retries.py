"""Reply scoring meets a locked database after inference: the store is re-run (never the models), once.

Another connection holds SQLite's write lock (``BEGIN EXCLUSIVE``) from the moment the models answer, for
longer than SQLite's own busy wait (cut to 50 ms here), so ``Database.run`` is what saves the work.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import InboxMessage, InboxOutcome, RiskAssessment, ScoredReply
from bot.db.session import Database
from bot.services import message_inbox
from bot.services.reply_scoring import ReplyInput, ReplyOutcome, ReplyScoringPipeline
from bot.services.seeker_risk import SeekerPost
from inference.types import ReplyScore, ReplyScoreRequest, RiskScore, RiskScoreRequest, RiskTier
from tests.bot.services.responder_fixtures import ScriptedInference
from tests.support.sqlite_write_lock import WriteLock

pytestmark = pytest.mark.reliability

T = TypeVar("T")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GUILD, CHANNEL, SEEKER, RESPONDER = 1, 2, 3, 4
POST_TEXT = "Made-up post: I cannot see a way through tonight."
REPLY_TEXT = "Made-up reply: I am here with you. What is weighing on you most?"
POST = SeekerPost(GUILD, CHANNEL, 500, SEEKER, POST_TEXT)
REPLY = ReplyInput(GUILD, CHANNEL, 600, RESPONDER, REPLY_TEXT, POST)
# Shorter than the retries' total backoff (>= 0.6 s with the waits below), much longer than SQLite's wait.
LOCK_HELD_S = 0.3


class LockingInference(ScriptedInference):
    """The models answer, and at that moment another process takes the write lock (once)."""

    def __init__(self, lock: WriteLock, hold_s: float | None) -> None:
        super().__init__()
        self.lock = lock
        self.hold_s = hold_s

    def _lock_once(self) -> None:
        if not self.lock.taken:
            self.lock.take(self.hold_s)

    async def score_reply(self, request: ReplyScoreRequest) -> ReplyScore:
        score = await super().score_reply(request)
        self._lock_once()
        return score

    async def score_risk(self, request: RiskScoreRequest) -> RiskScore:
        score = await super().score_risk(request)
        self._lock_once()
        return score


@pytest.fixture
async def locked_db(database: Database, fast_retries: None) -> AsyncIterator[tuple[Database, WriteLock]]:
    """A fresh engine on the migrated file (its connections get the short busy wait), both messages received."""
    fresh = Database(database.url)
    async with fresh.session() as session:
        for message_id, author_id in ((POST.message_id, SEEKER), (REPLY.reply_message_id, RESPONDER)):
            await message_inbox.record_received(
                session, message_id=message_id, guild_id=GUILD, channel_id=CHANNEL, author_id=author_id
            )
    lock = WriteLock(Path(database.url.removeprefix("sqlite+aiosqlite:///")))
    yield fresh, lock
    lock.release()
    await fresh.close()


def _pipeline(database: Database, inference: ScriptedInference, calls: list[int]) -> ReplyScoringPipeline:
    async def may_store(session: AsyncSession, message_id: int) -> bool:
        calls.append(message_id)
        return await message_inbox.still_pending(session, message_id)

    return ReplyScoringPipeline(
        database, inference, retention_days=7, clock=lambda: NOW, may_store_first_score=may_store
    )


async def _count(database: Database, model: type, *conditions: Any) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*conditions)) or 0)


def _retries(caplog: pytest.LogCaptureFixture, operation: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and f"during {operation}: attempt" in r.getMessage()
    ]


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_posts_risk_is_stored_once_after_a_lock_outlasting_sqlites_wait(locked_db, caplog) -> None:
    database, lock = locked_db
    inference = LockingInference(lock, LOCK_HELD_S)
    inference.tier = RiskTier.HIGH
    calls: list[int] = []
    with caplog.at_level(logging.INFO):
        event = await _pipeline(database, inference, calls).seeker_risk.score_seeker_post(POST)
    assert event is not None and event.message_id == POST.message_id and event.risk.tier is RiskTier.HIGH
    assert await _count(database, RiskAssessment, RiskAssessment.message_id == POST.message_id) == 1
    assert len(inference.risk_calls) == 1  # the models ran once; only the store was re-run
    assert _retries(caplog, f"store the risk of post {POST.message_id}")
    assert len(calls) >= 2 and set(calls) == {POST.message_id}  # the forget-me guard asked in every attempt
    assert _errors(caplog) == []
    assert POST_TEXT not in caplog.text


async def test_a_replys_score_is_stored_once_after_a_lock_outlasting_sqlites_wait(locked_db, caplog) -> None:
    database, lock = locked_db
    inference = LockingInference(lock, LOCK_HELD_S)
    inference.tier = RiskTier.HIGH
    calls: list[int] = []
    with caplog.at_level(logging.INFO):
        result = await _pipeline(database, inference, calls).score_reply(REPLY)
    assert result.outcome is ReplyOutcome.NEW
    # The reply carried its never-scored parent's risk: the post's event comes with it, once.
    assert result.seeker_risk is not None and result.seeker_risk.message_id == POST.message_id
    assert await _count(database, ScoredReply, ScoredReply.reply_message_id == REPLY.reply_message_id) == 1
    assert await _count(database, RiskAssessment, RiskAssessment.message_id == POST.message_id) == 1
    assert len(inference.reply_calls) == 1
    assert _retries(caplog, f"store the score of reply {REPLY.reply_message_id}")
    assert len(calls) >= 2
    assert _errors(caplog) == []
    assert REPLY_TEXT not in caplog.text and POST_TEXT not in caplog.text


async def test_a_forget_me_landing_during_the_lock_is_honoured_by_the_next_attempt(locked_db, caplog) -> None:
    database, lock = locked_db
    inference = LockingInference(lock, LOCK_HELD_S)
    # The process holding the lock is a forget-me of the responder: it deletes the reply's inbox row.
    lock.then = f"DELETE FROM message_inbox WHERE message_id = {REPLY.reply_message_id}"
    calls: list[int] = []
    with caplog.at_level(logging.INFO):
        result = await _pipeline(database, inference, calls).score_reply(REPLY)
    assert (result.outcome, result.skip_reason) == (ReplyOutcome.SKIPPED, "not_wanted")
    assert await _count(database, ScoredReply, ScoredReply.reply_message_id == REPLY.reply_message_id) == 0
    assert len(calls) >= 2
    assert _errors(caplog) == []


async def test_a_lock_outlasting_every_retry_stores_nothing_and_leaves_the_message_pending(
    locked_db, caplog
) -> None:
    database, lock = locked_db
    inference = LockingInference(lock, hold_s=None)
    with caplog.at_level(logging.INFO), pytest.raises(OperationalError):
        await _pipeline(database, inference, []).score_reply(REPLY)
    lock.release()
    assert await _count(database, ScoredReply, ScoredReply.reply_message_id == REPLY.reply_message_id) == 0
    async with database.session() as session:
        row = await session.get(InboxMessage, REPLY.reply_message_id)
    assert row is not None and row.outcome is InboxOutcome.PENDING  # the recovery sweep's to retry
    assert any("giving up after 4 attempts" in r.getMessage() for r in caplog.records)
    assert _errors(caplog) == []


class CommitLandsThenConnectionDrops(Database):
    """Each unit of work commits, then is run again, as after a PostgreSQL connection lost during COMMIT."""

    async def run(self, operation: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async with self.session() as session:
            await work(session)
        return await super().run(operation, work)


async def test_a_rerun_after_a_commit_that_landed_still_reports_the_first_score(
    locked_db, inference: ScriptedInference
) -> None:
    database, _lock = locked_db
    inference.tier = RiskTier.HIGH
    twice = CommitLandsThenConnectionDrops(database.url)
    try:
        result = await _pipeline(twice, inference, []).score_reply(REPLY)
    finally:
        await twice.close()
    # Still the first score (coaching may follow) and still the post's first risk (escalation follows).
    assert result.outcome is ReplyOutcome.NEW
    assert result.seeker_risk is not None
    assert await _count(database, ScoredReply, ScoredReply.reply_message_id == REPLY.reply_message_id) == 1
    assert await _count(database, RiskAssessment, RiskAssessment.message_id == POST.message_id) == 1
