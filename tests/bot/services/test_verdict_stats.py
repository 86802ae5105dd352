"""Alert precision from moderators' verdicts, and the threshold what-if, on a real SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from sqlalchemy import func, select

from bot.db.models import AuditLogEntry, Escalation, EscalationState, RiskAssessment
from bot.db.session import Database
from bot.services import verdict_stats
from bot.services.errors import UserFacingError
from bot.services.verdict_stats import (
    PrecisionWeek,
    VerdictCounts,
    alert_precision,
    describe_precision,
    describe_what_if,
    hypothetical_thresholds,
    threshold_what_if,
)
from inference.types import RiskThresholds

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # a Thursday
GUILD, OTHER_GUILD = 1, 2
# Labels chosen to be neither of today's: the code must take them from the data, never from a list.
THRESHOLDS = RiskThresholds(elevated={"crisis": 0.4, "sadness": 0.5}, high={"crisis": 0.7})
_ids = count(1000)


async def _alert(
    database: Database,
    state: EscalationState,
    *,
    probabilities: dict[str, float] | None = None,
    phrases: tuple[str, ...] = (),
    alerted: datetime | None = NOW - timedelta(days=1),
    kind: str = "post",
    tier: str = "high",
    guild: int = GUILD,
) -> int:
    message_id = next(_ids)
    async with database.session() as session:
        if probabilities is not None:
            session.add(
                RiskAssessment(
                    guild_id=guild,
                    channel_id=5,
                    message_id=message_id,
                    author_id=7,
                    source=kind,
                    tier=tier,
                    probabilities=probabilities,
                    phrase_matches=list(phrases),
                    scored_at=(alerted or NOW) - timedelta(minutes=1),
                )
            )
        session.add(
            Escalation(
                guild_id=guild,
                channel_id=5,
                message_id=message_id,
                member_id=7,
                kind=kind,
                tier=tier,
                state=state,
                created_at=(alerted or NOW) - timedelta(minutes=1),
                alerted_at=alerted,
            )
        )
    return message_id


async def _score(database: Database, probabilities: dict[str, float], *, when: datetime = NOW) -> None:
    async with database.session() as session:
        session.add(
            RiskAssessment(
                guild_id=GUILD,
                channel_id=5,
                message_id=next(_ids),
                author_id=8,
                source="post",
                tier="none",
                probabilities=probabilities,
                scored_at=when,
            )
        )


async def test_alert_precision_counts_each_weeks_verdicts(database: Database) -> None:
    this_week, last_week = NOW - timedelta(days=1), NOW - timedelta(days=8)
    await _alert(database, EscalationState.RESOLVED, alerted=this_week)
    await _alert(database, EscalationState.FALSE_ALARM, alerted=this_week)
    await _alert(database, EscalationState.CLAIMED, alerted=this_week)
    await _alert(database, EscalationState.ALERTED, alerted=this_week)
    await _alert(database, EscalationState.FALSE_ALARM, alerted=last_week)
    async with database.session() as session:
        weeks = await alert_precision(session, GUILD, NOW)
    assert weeks == [
        PrecisionWeek(datetime(2026, 11, 16).date(), VerdictCounts(alerts=1, false_alarms=1)),
        PrecisionWeek(
            datetime(2026, 11, 23).date(),
            VerdictCounts(alerts=4, false_alarms=1, resolved=1, acknowledged=1, unjudged=1),
        ),
    ]
    assert weeks[1].counts.precision == pytest.approx(2 / 3)
    assert weeks[0].counts.precision == 0.0


async def test_alert_precision_counts_only_risk_alerts_moderators_received(database: Database) -> None:
    await _alert(database, EscalationState.RESOLVED)
    await _alert(database, EscalationState.RESOLVED, alerted=NOW - timedelta(days=91))  # too old
    await _alert(database, EscalationState.MEMBER_SUPPORTED, alerted=None)  # consent "no": no alert
    await _alert(database, EscalationState.FALSE_ALARM, kind="checkin", tier="self_reported")
    await _alert(database, EscalationState.FALSE_ALARM, kind="talk_request", tier="high")
    await _alert(database, EscalationState.FALSE_ALARM, guild=OTHER_GUILD)
    async with database.session() as session:
        weeks = await alert_precision(session, GUILD, NOW)
    assert sum((w.counts for w in weeks), VerdictCounts()) == VerdictCounts(alerts=1, resolved=1)


async def test_a_higher_threshold_drops_false_alarms_and_misses_resolved_cases(database: Database) -> None:
    await _alert(database, EscalationState.RESOLVED, probabilities={"crisis": 0.75, "sadness": 0.9})
    await _alert(database, EscalationState.FALSE_ALARM, probabilities={"crisis": 0.72})
    await _alert(database, EscalationState.FALSE_ALARM, probabilities={"crisis": 0.71})
    await _alert(database, EscalationState.RESOLVED, probabilities={"crisis": 0.95})
    await _alert(database, EscalationState.ACKNOWLEDGED, probabilities={"crisis": 0.8})
    await _score(database, {"crisis": 0.1})
    other = hypothetical_thresholds(None, THRESHOLDS, high="0.9")
    async with database.session() as session:
        what_if = await threshold_what_if(session, GUILD, baseline=THRESHOLDS, other=other, now=NOW)
    assert (what_if.scores, what_if.high_before, what_if.high_after) == (6, 5, 1)
    assert what_if.sent == VerdictCounts(alerts=5, false_alarms=2, resolved=2, acknowledged=1)
    assert what_if.kept == VerdictCounts(alerts=1, resolved=1)
    assert what_if.missed == VerdictCounts(alerts=4, false_alarms=2, resolved=1, acknowledged=1)


async def test_a_lower_threshold_keeps_every_alert_and_adds_unjudged_high_messages(
    database: Database,
) -> None:
    await _alert(database, EscalationState.FALSE_ALARM, probabilities={"crisis": 0.72})
    await _score(database, {"crisis": 0.65})
    await _score(database, {"crisis": 0.1})
    other = hypothetical_thresholds(None, THRESHOLDS, high="crisis=0.6")
    async with database.session() as session:
        what_if = await threshold_what_if(session, GUILD, baseline=THRESHOLDS, other=other, now=NOW)
    assert (what_if.high_before, what_if.high_after) == (1, 2)
    assert what_if.kept == what_if.sent == VerdictCounts(alerts=1, false_alarms=1)


async def test_a_phrase_raised_alert_stays_an_alert_whatever_the_threshold(database: Database) -> None:
    await _alert(
        database, EscalationState.RESOLVED, probabilities={"crisis": 0.05}, phrases=("high:plan_or_means",)
    )
    await _alert(
        database, EscalationState.RESOLVED, probabilities={"crisis": 0.75}, phrases=("elevated:hopeless",)
    )
    other = hypothetical_thresholds(None, THRESHOLDS, high="0.99")
    async with database.session() as session:
        what_if = await threshold_what_if(session, GUILD, baseline=THRESHOLDS, other=other, now=NOW)
    assert what_if.phrase_raised == 1
    assert what_if.kept == VerdictCounts(alerts=1, resolved=1)
    assert what_if.missed.resolved == 1
    text = "\n".join(describe_what_if(what_if, title="t", baseline="now"))
    assert "1 alert came from a crisis phrase" in text


async def test_scores_from_a_model_without_the_threshold_labels_are_left_out(database: Database) -> None:
    # Scored before the risk model gained the label the high tier is now decided on.
    await _alert(database, EscalationState.RESOLVED, probabilities={"suicidal": 0.97})
    await _alert(database, EscalationState.FALSE_ALARM)  # no stored score at all
    await _score(database, {"suicidal": 0.99})
    await _score(database, {"crisis": 0.2})
    other = hypothetical_thresholds(None, THRESHOLDS, high="0.9")
    async with database.session() as session:
        what_if = await threshold_what_if(session, GUILD, baseline=THRESHOLDS, other=other, now=NOW)
    assert (what_if.scores, what_if.scores_left_out) == (1, 2)
    assert what_if.not_redecidable == 2
    assert what_if.kept == what_if.sent
    text = "\n".join(describe_what_if(what_if, title="t", baseline="now"))
    assert "(2) are counted as still sent" in text and "2 older scores" in text


async def test_an_alert_scored_just_before_the_window_is_still_re_tiered(database: Database) -> None:
    message_id = await _alert(
        database,
        EscalationState.FALSE_ALARM,
        probabilities={"crisis": 0.72},
        alerted=NOW - timedelta(days=89),
    )
    async with database.session() as session:
        score = await session.scalar(select(RiskAssessment).where(RiskAssessment.message_id == message_id))
        assert score is not None
        score.scored_at = NOW - timedelta(days=91)
    other = hypothetical_thresholds(None, THRESHOLDS, high="0.9")
    async with database.session() as session:
        what_if = await threshold_what_if(session, GUILD, baseline=THRESHOLDS, other=other, now=NOW)
    assert what_if.not_redecidable == 0 and what_if.missed.false_alarms == 1


async def test_the_what_if_changes_and_stores_nothing(database: Database) -> None:
    await _alert(database, EscalationState.FALSE_ALARM, probabilities={"crisis": 0.72})
    other = hypothetical_thresholds(None, THRESHOLDS, high="0.9")
    async with database.session() as session:
        await threshold_what_if(session, GUILD, baseline=THRESHOLDS, other=other, now=NOW)
        await alert_precision(session, GUILD, NOW)
        assert not session.new and not session.dirty and not session.deleted
    async with database.session() as session:
        assert await session.scalar(select(func.count()).select_from(AuditLogEntry)) == 0
        assert (await session.scalar(select(Escalation))).state is EscalationState.FALSE_ALARM


def test_hypothetical_thresholds_parse_like_setup() -> None:
    assert hypothetical_thresholds(None, THRESHOLDS, high="0.9").high == {"crisis": 0.9}
    assert hypothetical_thresholds({"high": {"crisis": 0.9}}, THRESHOLDS, high="default") == THRESHOLDS
    with pytest.raises(UserFacingError, match="must not be above"):
        hypothetical_thresholds(None, THRESHOLDS, high="0.3")
    with pytest.raises(UserFacingError, match="not a risk label"):
        hypothetical_thresholds(None, THRESHOLDS, high="suicidal=0.9")


def test_precision_lines_show_alerts_false_alarms_resolved_and_precision() -> None:
    weeks = [
        PrecisionWeek(datetime(2026, 11, 16).date(), VerdictCounts(alerts=1, false_alarms=1)),
        PrecisionWeek(
            datetime(2026, 11, 23).date(), VerdictCounts(alerts=3, false_alarms=1, resolved=1, unjudged=1)
        ),
    ]
    lines = describe_precision(weeks)
    assert lines[0] == (
        "**Risk alerts, last 90 days:** 4 alerts · 2 false alarms · 1 resolved · 1 awaiting a verdict"
        " — precision 33% (1 of 3 verdicts)"
    )
    assert (
        lines[1]
        == "• week of 2026-11-16: 1 alert · 1 false alarm · 0 resolved — precision 0% (0 of 1 verdict)"
    )
    assert describe_precision([]) == ["**Risk alerts, last 90 days:** none reached moderators."]


async def test_scores_are_read_in_batches_and_all_counted(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verdict_stats, "SCORE_BATCH", 2)
    for probability in (0.1, 0.75, 0.8, 0.95, 0.2):
        await _score(database, {"crisis": probability})
    await _alert(database, EscalationState.RESOLVED, probabilities={"crisis": 0.75})
    other = hypothetical_thresholds(None, THRESHOLDS, high="0.9")
    async with database.session() as session:
        what_if = await threshold_what_if(session, GUILD, baseline=THRESHOLDS, other=other, now=NOW)
    assert (what_if.scores, what_if.high_before, what_if.high_after) == (6, 4, 1)
    assert what_if.missed == VerdictCounts(alerts=1, resolved=1)
