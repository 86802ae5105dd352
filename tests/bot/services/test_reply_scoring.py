"""The reply pipeline on a real database: what is stored, what an edit or a delete changes, risk once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from bot.db.models import RiskAssessment, ScoredReply
from bot.db.session import Database
from bot.services.reply_scoring import (
    CoachingStatus,
    ReplyInput,
    ReplyOutcome,
    ReplyScoringPipeline,
    content_hash,
    find_reply,
    forget_message,
)
from bot.services.seeker_risk import SeekerPost
from inference.errors import RequestShed
from inference.types import Mechanism, Priority, RiskTier
from tests.bot.services.responder_fixtures import ScriptedInference

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GUILD, CHANNEL, SEEKER, RESPONDER = 1, 2, 3, 4
POST = SeekerPost(GUILD, CHANNEL, 500, SEEKER, "I failed my exam again and I feel useless.")


def _reply(text: str = "That sounds exhausting. What happened?", message_id: int = 600) -> ReplyInput:
    return ReplyInput(GUILD, CHANNEL, message_id, RESPONDER, text, POST)


def _pipeline(
    database: Database, inference: ScriptedInference, retention_days: int = 7
) -> ReplyScoringPipeline:
    return ReplyScoringPipeline(database, inference, retention_days=retention_days, clock=lambda: NOW)


async def _stored(database: Database, message_id: int = 600) -> ScoredReply | None:
    async with database.session() as session:
        return await find_reply(session, message_id)


async def test_new_reply_is_stored_with_levels_and_spans_as_offsets(
    database: Database, inference: ScriptedInference
) -> None:
    inference.rationale_words = {Mechanism.INTERPRETATIONS: "That sounds exhausting"}
    result = await _pipeline(database, inference).score_reply(_reply())
    assert result.outcome is ReplyOutcome.NEW
    row = await _stored(database)
    assert row is not None
    assert (row.er_level, row.ip_level, row.ex_level) == (1, 2, 0)
    assert row.rationale_spans == [{"mechanism": "IP", "start": 0, "end": 22}]
    assert (row.responder_id, row.seeker_id, row.parent_message_id) == (RESPONDER, SEEKER, POST.message_id)
    assert row.coaching_status == CoachingStatus.PENDING.value


async def test_reply_text_is_kept_only_until_retention_expires(
    database: Database, inference: ScriptedInference
) -> None:
    await _pipeline(database, inference, retention_days=3).score_reply(_reply())
    row = await _stored(database)
    assert row is not None
    assert row.reply_text == _reply().reply_text
    assert row.text_expires_at == NOW + timedelta(days=3)


async def test_zero_retention_stores_no_text(database: Database, inference: ScriptedInference) -> None:
    await _pipeline(database, inference, retention_days=0).score_reply(_reply())
    row = await _stored(database)
    assert row is not None
    assert row.reply_text is None
    assert row.text_expires_at is None


async def test_edit_with_the_same_text_is_not_rescored(
    database: Database, inference: ScriptedInference
) -> None:
    pipeline = _pipeline(database, inference)
    await pipeline.score_reply(_reply("That sounds exhausting."))
    result = await pipeline.score_reply(_reply("that  sounds exhausting.\u200b"), is_edit=True)
    assert result.outcome is ReplyOutcome.UNCHANGED
    assert len(inference.reply_calls) == 1


async def test_material_edit_rescores_and_keeps_the_coaching_status(
    database: Database, inference: ScriptedInference
) -> None:
    pipeline = _pipeline(database, inference)
    await pipeline.score_reply(_reply("Ok."))
    async with database.session() as session:
        row = await find_reply(session, 600)
        assert row is not None
        row.coaching_status = CoachingStatus.SENT.value
    inference.levels = {
        Mechanism.EMOTIONAL_REACTIONS: 2,
        Mechanism.INTERPRETATIONS: 2,
        Mechanism.EXPLORATIONS: 2,
    }
    result = await pipeline.score_reply(_reply("That sounds exhausting. What happened?"), is_edit=True)
    assert result.outcome is ReplyOutcome.UPDATED
    row = await _stored(database)
    assert row is not None
    assert (row.er_level, row.ip_level, row.ex_level) == (2, 2, 2)
    assert row.content_hash == content_hash("That sounds exhausting. What happened?")
    assert row.coaching_status == CoachingStatus.SENT.value


async def test_edit_of_a_reply_never_scored_is_ignored(
    database: Database, inference: ScriptedInference
) -> None:
    result = await _pipeline(database, inference).score_reply(_reply(), is_edit=True)
    assert result.outcome is ReplyOutcome.SKIPPED
    assert inference.reply_calls == []
    assert await _stored(database) is None


async def test_empty_or_invisible_reply_is_skipped(database: Database, inference: ScriptedInference) -> None:
    result = await _pipeline(database, inference).score_reply(_reply(" \u200b\u200d "))
    assert result.outcome is ReplyOutcome.SKIPPED
    assert inference.reply_calls == []


async def test_parent_risk_is_reported_once_for_many_replies(
    database: Database, inference: ScriptedInference
) -> None:
    inference.tier = RiskTier.HIGH
    pipeline = _pipeline(database, inference)
    first = await pipeline.score_reply(_reply(message_id=601))
    second = await pipeline.score_reply(_reply(message_id=602))
    assert first.seeker_risk is not None
    assert first.seeker_risk.message_id == POST.message_id
    assert first.seeker_risk.tier is RiskTier.HIGH
    assert second.seeker_risk is None


async def test_first_reply_to_an_unscored_post_carries_risk_priority(
    database: Database, inference: ScriptedInference
) -> None:
    pipeline = _pipeline(database, inference)
    await pipeline.score_reply(_reply(message_id=601))
    await pipeline.score_reply(_reply(message_id=602))
    assert [call.priority for call in inference.reply_calls] == [Priority.RISK, Priority.COACHING]


async def test_top_level_post_is_risk_scored_once(database: Database, inference: ScriptedInference) -> None:
    pipeline = _pipeline(database, inference)
    event = await pipeline.seeker_risk.score_seeker_post(POST)
    again = await pipeline.seeker_risk.score_seeker_post(POST)
    assert event is not None and event.message_id == POST.message_id
    assert again is None
    assert len(inference.risk_calls) == 1
    async with database.session() as session:
        row = await session.scalar(select(RiskAssessment))
    assert row is not None and row.message_id == POST.message_id and row.tier == "none"
    assert row.author_id == SEEKER


async def test_shed_reply_still_risk_scores_its_parent(
    database: Database, inference: ScriptedInference
) -> None:
    inference.fail_with = RequestShed("queue full")
    result = await _pipeline(database, inference).score_reply(_reply())
    assert result.outcome is ReplyOutcome.SKIPPED
    assert result.seeker_risk is not None
    assert len(inference.risk_calls) == 1
    assert await _stored(database) is None


async def test_deleting_a_reply_removes_its_row(database: Database, inference: ScriptedInference) -> None:
    await _pipeline(database, inference).score_reply(_reply())
    async with database.session() as session:
        await forget_message(session, 600)
    assert await _stored(database) is None


async def test_deleting_a_seeker_post_removes_its_risk(
    database: Database, inference: ScriptedInference
) -> None:
    await _pipeline(database, inference).score_reply(_reply())
    async with database.session() as session:
        await forget_message(session, POST.message_id)
    async with database.session() as session:
        assert await session.scalar(select(func.count()).select_from(RiskAssessment)) == 0
        row = await find_reply(session, 600)
    assert row is not None and row.parent_risk is None and row.parent_risk_tier is None


def test_content_hash_ignores_case_spacing_and_zero_width_characters() -> None:
    assert content_hash("That sounds  HARD") == content_hash(" that sounds hard\u200b")
    assert content_hash("That sounds hard") != content_hash("That sounds easy")
