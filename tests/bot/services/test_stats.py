"""Guild counts and level trends on a real database, and the trend chart as a PNG."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.db.session import Database
from bot.services import support_channels
from bot.services.charts import render_level_trend, render_level_trend_async
from bot.services.reply_scoring import ReplyInput, ReplyScoringPipeline
from bot.services.seeker_risk import SeekerPost
from bot.services.stats import LevelPoint, guild_counts, level_trend
from inference.types import Mechanism, RiskTier
from tests.bot.services.responder_fixtures import ScriptedInference

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
GUILD, CHANNEL, SEEKER = 1, 2, 3
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


async def _score(database, inference, *, message_id, responder, levels, when, post_id=500):
    inference.levels = dict(zip(list(Mechanism), levels, strict=True))
    post = SeekerPost(GUILD, CHANNEL, post_id, SEEKER, "Rough week.")
    pipeline = ReplyScoringPipeline(database, inference, retention_days=7, clock=lambda: when)
    await pipeline.score_reply(ReplyInput(GUILD, CHANNEL, message_id, responder, "Sorry to hear that.", post))


async def test_level_trend_is_the_daily_mean_per_mechanism(
    database: Database, inference: ScriptedInference
) -> None:
    await _score(database, inference, message_id=1, responder=4, levels=(2, 0, 0), when=T0)
    await _score(
        database, inference, message_id=2, responder=5, levels=(0, 2, 1), when=T0 + timedelta(hours=1)
    )
    await _score(
        database, inference, message_id=3, responder=4, levels=(1, 1, 1), when=T0 + timedelta(days=1)
    )
    async with database.session() as session:
        points = await level_trend(session, GUILD, T0 - timedelta(days=1))
    assert points == [
        LevelPoint(T0.date(), er=1.0, ip=1.0, ex=0.5, replies=2),
        LevelPoint((T0 + timedelta(days=1)).date(), er=1.0, ip=1.0, ex=1.0, replies=1),
    ]


async def test_member_trend_shows_only_their_own_replies(
    database: Database, inference: ScriptedInference
) -> None:
    await _score(database, inference, message_id=1, responder=4, levels=(2, 2, 2), when=T0)
    await _score(database, inference, message_id=2, responder=5, levels=(0, 0, 0), when=T0)
    async with database.session() as session:
        points = await level_trend(session, GUILD, T0 - timedelta(days=1), responder_id=4)
    assert [(p.er, p.replies) for p in points] == [(2.0, 1)]


async def test_guild_counts_add_up(database: Database, inference: ScriptedInference) -> None:
    async with database.session() as session:
        await support_channels.add(session, GUILD, CHANNEL, 9)
    inference.tier = RiskTier.HIGH
    await _score(database, inference, message_id=1, responder=4, levels=(1, 1, 1), when=T0)
    inference.tier = RiskTier.NONE
    await _score(database, inference, message_id=2, responder=5, levels=(1, 1, 1), when=T0, post_id=501)
    await _score(
        database, inference, message_id=3, responder=5, levels=(1, 1, 1), when=T0 - timedelta(days=30)
    )
    async with database.session() as session:
        counts = await guild_counts(session, GUILD, T0)
    assert counts.support_channels == 1
    assert (counts.replies_scored, counts.replies_last_7_days, counts.responders) == (3, 2, 2)
    assert (counts.seeker_posts_scored, counts.high_risk_posts) == (2, 1)


def test_trend_chart_is_a_png() -> None:
    points = [LevelPoint(T0.date() + timedelta(days=i), 1.0, 0.5, i / 5, i + 1) for i in range(5)]
    assert render_level_trend(points, "Empathy over time").startswith(PNG_MAGIC)


async def test_empty_trend_still_renders_off_the_event_loop() -> None:
    assert (await render_level_trend_async([], "Nothing yet")).startswith(PNG_MAGIC)
