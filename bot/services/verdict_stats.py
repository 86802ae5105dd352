"""What moderators' verdicts on risk alerts say: alert precision per week, and what another threshold would have done.

Advice only: nothing here changes a setting or stores anything. The what-if re-applies the tier rule
(``inference.risk.tiers.assign_tier``) to the probabilities and crisis-phrase matches already stored for each
message, with whatever labels those probabilities and thresholds carry.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Escalation, EscalationState, RiskAssessment
from bot.services.escalation_policy import EscalationKind
from bot.services.risk_thresholds import from_mapping, updated
from inference.risk.tiers import assign_tier, phrase_tier
from inference.types import RiskThresholds, RiskTier

log = logging.getLogger(__name__)

WINDOW_DAYS = 90
SCORE_BATCH = 2000
# Cases opened from a risk score. A check-in "struggling" or "talk to someone" is the member's own request
# (tier ``self_reported``, or kind talk_request): no threshold decides it, so no verdict on it judges one.
SCORED_KINDS = (EscalationKind.POST.value, EscalationKind.CHECKIN.value)
# The VerdictCounts field each state counts in; any other state of a sent alert has no verdict yet.
_VERDICT_FIELD = {
    EscalationState.FALSE_ALARM: "false_alarms",
    EscalationState.RESOLVED: "resolved",
    EscalationState.ACKNOWLEDGED: "acknowledged",
    EscalationState.CLAIMED: "acknowledged",
}


@dataclass(frozen=True, slots=True)
class VerdictCounts:
    """Moderator alerts by the verdict they carry now (each alert counted once, in its latest state)."""

    alerts: int = 0
    false_alarms: int = 0
    resolved: int = 0
    acknowledged: int = 0  # acknowledged or claimed, not resolved yet: judged worth a look
    unjudged: int = 0  # nobody pressed a button yet

    @property
    def verdicts(self) -> int:
        return self.false_alarms + self.resolved + self.acknowledged

    @property
    def precision(self) -> float | None:
        """Share of verdicts that were not a false alarm; None before the first verdict."""
        return (self.resolved + self.acknowledged) / self.verdicts if self.verdicts else None

    def __add__(self, other: VerdictCounts) -> VerdictCounts:
        return VerdictCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __sub__(self, other: VerdictCounts) -> VerdictCounts:
        return VerdictCounts(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))


def count_verdicts(states: Iterable[EscalationState]) -> VerdictCounts:
    tally = Counter(_VERDICT_FIELD.get(state, "unjudged") for state in states)
    return VerdictCounts(alerts=sum(tally.values()), **tally)


@dataclass(frozen=True, slots=True)
class PrecisionWeek:
    week_start: date  # a Monday (UTC)
    counts: VerdictCounts


async def _risk_alerts(session: AsyncSession, guild_id: int, since: datetime) -> list[Escalation]:
    """Alerts that reached moderators since ``since`` and were raised by a risk score (high tier)."""
    return list(
        await session.scalars(
            select(Escalation)
            .where(
                Escalation.guild_id == guild_id,
                Escalation.alerted_at.is_not(None),
                Escalation.alerted_at >= since,
                Escalation.kind.in_(SCORED_KINDS),
                Escalation.tier == RiskTier.HIGH.value,
            )
            .order_by(Escalation.alerted_at, Escalation.id)
        )
    )


async def alert_precision(
    session: AsyncSession, guild_id: int, now: datetime, *, days: int = WINDOW_DAYS
) -> list[PrecisionWeek]:
    """Per week (by the day each alert was sent), the last ``days`` days' risk alerts and their verdicts.

    Weeks without an alert are left out; the list is oldest first.
    """
    weeks: dict[date, list[EscalationState]] = defaultdict(list)
    for row in await _risk_alerts(session, guild_id, now - timedelta(days=days)):
        assert row.alerted_at is not None
        day = row.alerted_at.date()
        weeks[day - timedelta(days=day.weekday())].append(row.state)
    return [PrecisionWeek(start, count_verdicts(weeks[start])) for start in sorted(weeks)]


# -- what another threshold would have done ----------------------------------------------------------------


def hypothetical_thresholds(
    stored: Mapping[str, Any] | None, defaults: RiskThresholds, *, high: str
) -> RiskThresholds:
    """The thresholds `/peercare setup high_threshold:<high>` would save (same parsing, same checks)."""
    return from_mapping(updated(stored, defaults, high=high), defaults)


@dataclass(frozen=True, slots=True)
class ThresholdWhatIf:
    """The last ``days`` days replayed with other thresholds, against what moderators actually got."""

    days: int
    scores: int  # stored risk scores (posts and check-in answers) re-tiered
    scores_left_out: int  # scores with none of the thresholds' high labels (an earlier risk model)
    high_before: int  # of ``scores``: high with the baseline thresholds
    high_after: int  # of ``scores``: high with the other thresholds
    sent: VerdictCounts  # risk alerts moderators received, by verdict
    kept: VerdictCounts  # of those, the ones the other thresholds would still have raised
    phrase_raised: int  # alerts a crisis phrase lifts to high: they stay alerts whatever the threshold
    not_redecidable: int  # alerts without a comparable stored score: counted as kept

    @property
    def missed(self) -> VerdictCounts:
        return self.sent - self.kept


def _comparable(probabilities: Mapping[str, Any], thresholds: RiskThresholds) -> bool:
    # A score from a model that answered none of the labels the high tier is decided on cannot be re-tiered
    # honestly: it would read as "never high" when the model simply never said.
    return any(label in probabilities for label in thresholds.high)


class _Score(NamedTuple):
    """What the what-if reads of a stored risk score: probabilities and crisis-phrase matches (never text)."""

    probabilities: Mapping[str, Any]
    phrase_matches: tuple[str, ...]


def _score(probabilities: Mapping[str, Any] | None, phrase_matches: Sequence[str] | None) -> _Score:
    return _Score(probabilities or {}, tuple(phrase_matches or ()))


def _tier(score: _Score, thresholds: RiskThresholds) -> RiskTier:
    tier, _labels = assign_tier(score.probabilities, thresholds, score.phrase_matches)
    return tier


_SCORE_COLUMNS = (
    RiskAssessment.source,
    RiskAssessment.message_id,
    RiskAssessment.probabilities,
    RiskAssessment.phrase_matches,
)


async def threshold_what_if(
    session: AsyncSession,
    guild_id: int,
    *,
    baseline: RiskThresholds,
    other: RiskThresholds,
    now: datetime,
    days: int = WINDOW_DAYS,
) -> ThresholdWhatIf:
    """Re-tier the last ``days`` days' stored risk scores with ``other`` (and ``baseline``, for comparison)."""
    since = now - timedelta(days=days)
    alerts = await _risk_alerts(session, guild_id, since)
    wanted = {(alert.kind, alert.message_id) for alert in alerts}
    alert_scores: dict[tuple[str, int], _Score] = {}
    scores = left_out = high_before = high_after = 0
    # Every message in a support channel has a score: a busy server has hundreds of thousands in 90 days.
    # Streamed in batches (the loop serves the gateway between them), columns only, nothing kept but counts.
    result = await session.stream(
        select(*_SCORE_COLUMNS)
        .where(RiskAssessment.guild_id == guild_id, RiskAssessment.scored_at >= since)
        .execution_options(yield_per=SCORE_BATCH)
    )
    async for batch in result.partitions():
        for source, message_id, probabilities, phrase_matches in batch:
            score = _score(probabilities, phrase_matches)
            if (source, message_id) in wanted:
                alert_scores[(source, message_id)] = score
            if not _comparable(score.probabilities, other):
                left_out += 1
                continue
            scores += 1
            high_before += _tier(score, baseline) is RiskTier.HIGH
            high_after += _tier(score, other) is RiskTier.HIGH
        await asyncio.sleep(0)
    missing = [message_id for kind, message_id in wanted - alert_scores.keys()]
    if missing:  # an alert sent in the window for a message scored just before it
        for source, message_id, probabilities, phrase_matches in await session.execute(
            select(*_SCORE_COLUMNS).where(
                RiskAssessment.guild_id == guild_id, RiskAssessment.message_id.in_(missing)
            )
        ):
            alert_scores[(source, message_id)] = _score(probabilities, phrase_matches)
    kept_states: list[EscalationState] = []
    phrase_raised = not_redecidable = 0
    for alert in alerts:
        found = alert_scores.get((alert.kind, alert.message_id))
        if found is None or not _comparable(found.probabilities, other):
            not_redecidable += 1
            kept_states.append(alert.state)
            continue
        if any(phrase_tier(match) is RiskTier.HIGH for match in found.phrase_matches):
            phrase_raised += 1
        if _tier(found, other) is RiskTier.HIGH:
            kept_states.append(alert.state)
    return ThresholdWhatIf(
        days=days,
        scores=scores,
        scores_left_out=left_out,
        high_before=high_before,
        high_after=high_after,
        sent=count_verdicts(alert.state for alert in alerts),
        kept=count_verdicts(kept_states),
        phrase_raised=phrase_raised,
        not_redecidable=not_redecidable,
    )


# -- words for moderators ----------------------------------------------------------------------------------


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _precision(counts: VerdictCounts) -> str:
    if counts.precision is None:
        return "no verdicts yet"
    real = counts.resolved + counts.acknowledged
    return f"precision {counts.precision:.0%} ({real} of {_plural(counts.verdicts, 'verdict')})"


def _verdict_summary(counts: VerdictCounts) -> str:
    parts = [
        _plural(counts.alerts, "alert"),
        _plural(counts.false_alarms, "false alarm"),
        f"{counts.resolved} resolved",
    ]
    if counts.acknowledged:
        parts.append(f"{counts.acknowledged} acknowledged")
    if counts.unjudged:
        parts.append(f"{counts.unjudged} awaiting a verdict")
    return " · ".join(parts) + " — " + _precision(counts)


def describe_precision(weeks: Sequence[PrecisionWeek], *, days: int = WINDOW_DAYS) -> list[str]:
    """Lines for `/peercare stats`: the period's total, then one line per week with alerts."""
    total = sum((week.counts for week in weeks), VerdictCounts())
    heading = f"**Risk alerts, last {days} days:** "
    if not total.alerts:
        return [heading + "none reached moderators."]
    lines = [heading + _verdict_summary(total)]
    lines += [f"• week of {week.week_start.isoformat()}: {_verdict_summary(week.counts)}" for week in weeks]
    lines.append(
        "-# Precision: the share of moderators' verdicts that were not *False alarm* "
        "(Acknowledge, Claim and Resolve count as real). Try another threshold: `/peercare threshold-whatif`."
    )
    return lines


def describe_what_if(what_if: ThresholdWhatIf, *, title: str, baseline: str) -> list[str]:
    """Lines for a moderator: what the other thresholds would have done, next to ``baseline`` (words)."""
    lines = [f"**{title}** (last {what_if.days} days)"]
    if not what_if.scores and not what_if.sent.alerts:
        lines.append(f"No risk scores stored in the last {what_if.days} days: nothing to compare yet.")
    else:
        lines.append(
            f"• High-tier messages: {what_if.high_before} with {baseline} → {what_if.high_after} "
            f"(of {_plural(what_if.scores, 'scored message')})"
        )
        sent, kept, missed = what_if.sent, what_if.kept, what_if.missed
        if sent.alerts:
            lines += [
                f"• Moderator alerts: {kept.alerts} of the {sent.alerts} sent would still have been sent",
                f"• False alarms: {sent.false_alarms} → {kept.false_alarms}",
                f"• Resolved cases it would have missed: {missed.resolved} of {sent.resolved}",
            ]
            if sent.acknowledged:
                lines.append(
                    f"• Acknowledged cases it would have missed: {missed.acknowledged} of {sent.acknowledged}"
                )
            if sent.unjudged:
                lines.append(f"• Alerts without a verdict yet it would not have sent: {missed.unjudged}")
        else:
            lines.append(
                "• No risk alerts reached moderators in this period, so there are no verdicts to compare."
            )
        if what_if.high_after > what_if.high_before:
            lines.append(
                f"• {what_if.high_after - what_if.high_before} more messages would have been high tier; "
                "nobody has judged those."
            )
    if what_if.phrase_raised:
        lines.append(
            f"• {_plural(what_if.phrase_raised, 'alert')} came from a crisis phrase: "
            "a phrase-raised alert stays an alert whatever the threshold."
        )
    else:
        lines.append("• An alert raised by a crisis phrase stays an alert whatever the threshold.")
    if what_if.not_redecidable:
        lines.append(
            f"• Alerts without a comparable stored score ({what_if.not_redecidable}) are counted as still sent."
        )
    if what_if.scores_left_out:
        lines.append(
            f"• Left out: {_plural(what_if.scores_left_out, 'older score')} from a risk model without "
            "these thresholds' labels."
        )
    return lines
