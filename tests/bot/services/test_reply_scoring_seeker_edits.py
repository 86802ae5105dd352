"""An edited seeker post's risk is scored again; only a higher tier (in the guild's terms) is reported."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from bot.db.models import RiskAssessment
from bot.db.session import Database
from bot.services import guild_settings
from bot.services.reply_scoring import ReplyScoringPipeline
from bot.services.seeker_risk import SeekerPost
from inference.types import RiskTier
from tests.bot.services.responder_fixtures import ScriptedInference

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POST = SeekerPost(1, 2, 500, 3, "Long week, but I'm okay.")
EDITED = SeekerPost(1, 2, 500, 3, "Long week. I don't think I can go on.")


def _pipeline(database: Database, inference: ScriptedInference) -> ReplyScoringPipeline:
    return ReplyScoringPipeline(database, inference, retention_days=7, clock=lambda: NOW)


async def _risk_row(database: Database) -> RiskAssessment:
    async with database.session() as session:
        row = await session.scalar(select(RiskAssessment).where(RiskAssessment.message_id == POST.message_id))
    assert row is not None
    return row


async def test_edit_that_raises_the_tier_is_reported_and_stored(
    database: Database, inference: ScriptedInference
) -> None:
    pipeline = _pipeline(database, inference)
    await pipeline.seeker_risk.score_seeker_post(POST)
    inference.tier = RiskTier.HIGH
    event = await pipeline.seeker_risk.rescore_seeker_post(EDITED, first_time=False)
    assert event is not None and event.risk.tier is RiskTier.HIGH
    row = await _risk_row(database)
    assert (row.tier, row.probabilities["suicidal"]) == ("high", 0.9)


async def test_edit_that_would_lower_the_tier_changes_nothing(
    database: Database, inference: ScriptedInference
) -> None:
    pipeline = _pipeline(database, inference)
    inference.tier = RiskTier.HIGH
    await pipeline.seeker_risk.score_seeker_post(EDITED)
    inference.tier = RiskTier.NONE
    assert await pipeline.seeker_risk.rescore_seeker_post(POST, first_time=False) is None
    row = await _risk_row(database)
    assert (row.tier, row.probabilities["suicidal"]) == ("high", 0.9)


async def test_edit_with_the_same_tier_is_not_reported(
    database: Database, inference: ScriptedInference
) -> None:
    pipeline = _pipeline(database, inference)
    await pipeline.seeker_risk.score_seeker_post(POST)
    assert await pipeline.seeker_risk.rescore_seeker_post(EDITED, first_time=False) is None
    assert len(inference.risk_calls) == 2


async def test_rise_is_judged_with_the_guild_thresholds(
    database: Database, inference: ScriptedInference
) -> None:
    # The guild asks for 0.95 before "high"; escalation recorded the post as elevated under that rule.
    async with database.session() as session:
        settings = await guild_settings.get_or_create(session, POST.guild_id)
        settings.risk_thresholds = {"high": {"suicidal": 0.95}, "elevated": {"suicidal": 0.5}}
    pipeline = _pipeline(database, inference)
    inference.tier = RiskTier.HIGH  # the model card's tier; 0.9 is only elevated for this guild
    await pipeline.seeker_risk.score_seeker_post(POST)
    async with database.session() as session:
        (await session.scalar(select(RiskAssessment))).tier = "elevated"
    assert await pipeline.seeker_risk.rescore_seeker_post(EDITED, first_time=False) is None


async def test_edit_of_an_unscored_message_is_scored_only_when_it_is_a_post(
    database: Database, inference: ScriptedInference
) -> None:
    pipeline = _pipeline(database, inference)
    assert await pipeline.seeker_risk.rescore_seeker_post(EDITED, first_time=False) is None
    assert inference.risk_calls == []
    event = await pipeline.seeker_risk.rescore_seeker_post(EDITED, first_time=True)
    assert event is not None and (await _risk_row(database)).tier == "none"
