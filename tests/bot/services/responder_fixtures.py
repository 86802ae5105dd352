"""Fixtures for the responder services' tests: a real SQLite file migrated with Alembic, as the bot's is."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.db.migrate import upgrade_database_async
from bot.db.session import Database
from inference.types import (
    EmpathyLevel,
    EmpathyResult,
    Mechanism,
    MechanismScore,
    RationaleSpan,
    ReplyScore,
    ReplyScoreRequest,
    RiskResult,
    RiskScore,
    RiskScoreRequest,
    RiskTier,
)


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'peercare.db'}"
    await upgrade_database_async(url)
    db = Database(url)
    yield db
    await db.close()


class ScriptedInference:
    """An InferenceClient whose answers a test sets: the pipeline's own logic is what these tests check.

    The real models are exercised by the inference tests and, through the bot, by the e2e tests.
    """

    def __init__(self) -> None:
        self.levels = {
            Mechanism.EMOTIONAL_REACTIONS: 1,
            Mechanism.INTERPRETATIONS: 2,
            Mechanism.EXPLORATIONS: 0,
        }
        self.rationale_words: dict[Mechanism, str] = {}
        self.tier = RiskTier.NONE
        self.reply_calls: list[ReplyScoreRequest] = []
        self.risk_calls: list[RiskScoreRequest] = []
        self.fail_with: Exception | None = None

    @property
    def ready(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _risk(self) -> RiskResult:
        high = 0.9 if self.tier is RiskTier.HIGH else 0.05
        return RiskResult(probabilities={"suicidal": high}, tier=self.tier)

    async def score_reply(self, request: ReplyScoreRequest) -> ReplyScore:
        self.reply_calls.append(request)
        if self.fail_with is not None:
            raise self.fail_with
        scores = {}
        for mechanism, level in self.levels.items():
            spans = ()
            words = self.rationale_words.get(mechanism)
            if words and words in request.reply_text:
                start = request.reply_text.index(words)
                spans = (RationaleSpan(start, start + len(words), words),)
            probabilities = tuple(0.8 if i == level else 0.1 for i in range(3))
            scores[mechanism] = MechanismScore(mechanism, EmpathyLevel(level), probabilities, spans)
        return ReplyScore(
            reply_id=request.reply_id,
            parent_id=request.parent_id,
            empathy=EmpathyResult(
                scores[Mechanism.EMOTIONAL_REACTIONS],
                scores[Mechanism.INTERPRETATIONS],
                scores[Mechanism.EXPLORATIONS],
            ),
            parent_risk=self._risk(),
        )

    async def score_risk(self, request: RiskScoreRequest) -> RiskScore:
        self.risk_calls.append(request)
        return RiskScore(message_id=request.message_id, risk=self._risk())


@pytest.fixture
def inference() -> ScriptedInference:
    return ScriptedInference()
