"""A reply deleted while the pipeline scores it: nothing is stored again, and nothing raises."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from bot.db.session import Database
from bot.services.reply_scoring import (
    ReplyInput,
    ReplyOutcome,
    ReplyScoringPipeline,
    find_reply,
    forget_message,
)
from bot.services.seeker_risk import SeekerPost
from inference.types import ReplyScore, ReplyScoreRequest
from tests.bot.services.responder_fixtures import ScriptedInference

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POST = SeekerPost(1, 2, 500, 3, "I failed my exam again and I feel useless.")
REPLY = ReplyInput(1, 2, 600, 4, "That sounds exhausting.", POST)
EDITED = ReplyInput(1, 2, 600, 4, "That sounds exhausting. What happened?", POST)


class InferenceWithAStepInside(ScriptedInference):
    """Runs ``during`` while a reply is being scored: what another task does meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.during: Callable[[], Awaitable[None]] | None = None

    async def score_reply(self, request: ReplyScoreRequest) -> ReplyScore:
        if self.during is not None:
            await self.during()
        return await super().score_reply(request)


async def _stored(database: Database):  # type: ignore[no-untyped-def]
    async with database.session() as session:
        return await find_reply(session, REPLY.reply_message_id)


async def test_edit_of_a_reply_removed_meanwhile_does_not_store_it_again(database: Database) -> None:
    inference = InferenceWithAStepInside()
    pipeline = ReplyScoringPipeline(database, inference, retention_days=7, clock=lambda: NOW)
    await pipeline.score_reply(REPLY)

    async def removed_elsewhere() -> None:  # e.g. forget-me, which does not go through the pipeline
        async with database.session() as session:
            await forget_message(session, REPLY.reply_message_id)

    inference.during = removed_elsewhere
    result = await pipeline.score_reply(EDITED, is_edit=True)
    assert result.outcome is ReplyOutcome.SKIPPED
    assert await _stored(database) is None


async def test_reply_deleted_during_its_first_scoring_is_not_stored(database: Database) -> None:
    inference = InferenceWithAStepInside()
    pipeline = ReplyScoringPipeline(database, inference, retention_days=7, clock=lambda: NOW)
    deleting: list[asyncio.Task[int]] = []

    async def deleted_on_discord() -> None:
        deleting.append(asyncio.create_task(pipeline.forget([REPLY.reply_message_id])))
        await asyncio.sleep(0)  # the delete handler starts (and waits for this scoring)

    inference.during = deleted_on_discord
    result = await pipeline.score_reply(REPLY)
    await asyncio.wait_for(deleting[0], 10)
    assert result.outcome is ReplyOutcome.SKIPPED
    assert await _stored(database) is None
    assert pipeline.is_deleted(REPLY.reply_message_id)
