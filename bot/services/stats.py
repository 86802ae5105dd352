"""Numbers for moderators and responders: counts per guild and empathy levels over time (ids only)."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import CoachingDelivery, Escalation, RiskAssessment, ScoredReply, SupportChannel
from inference.types import Mechanism

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LevelPoint:
    """Mean ER/IP/EX level (0-2) of the replies scored on one day."""

    day: date
    er: float
    ip: float
    ex: float
    replies: int

    def level(self, mechanism: Mechanism) -> float:
        """The day's mean level of ``mechanism``: its field is named by its code, like the scored-reply columns."""
        return float(getattr(self, mechanism.value.lower()))


@dataclass(frozen=True, slots=True)
class GuildCounts:
    support_channels: int
    replies_scored: int
    replies_last_7_days: int
    responders: int
    coaching_notes_sent: int
    digests_sent: int
    invitations_sent: int
    seeker_posts_scored: int
    high_risk_posts: int
    escalations: int


async def _count(session: AsyncSession, statement) -> int:
    return int(await session.scalar(statement) or 0)


async def guild_counts(session: AsyncSession, guild_id: int, now: datetime) -> GuildCounts:
    deliveries = dict(
        (
            await session.execute(
                select(CoachingDelivery.kind, func.count())
                .where(CoachingDelivery.guild_id == guild_id, CoachingDelivery.status == "sent")
                .group_by(CoachingDelivery.kind)
            )
        ).all()
    )
    replies = select(func.count()).select_from(ScoredReply).where(ScoredReply.guild_id == guild_id)
    posts = (
        select(func.count())
        .select_from(RiskAssessment)
        .where(RiskAssessment.guild_id == guild_id, RiskAssessment.source == "post")
    )
    return GuildCounts(
        support_channels=await _count(
            session,
            select(func.count()).select_from(SupportChannel).where(SupportChannel.guild_id == guild_id),
        ),
        replies_scored=await _count(session, replies),
        replies_last_7_days=await _count(
            session, replies.where(ScoredReply.scored_at >= now - timedelta(days=7))
        ),
        responders=await _count(
            session,
            select(func.count(func.distinct(ScoredReply.responder_id))).where(
                ScoredReply.guild_id == guild_id
            ),
        ),
        coaching_notes_sent=int(deliveries.get("coaching", 0)),
        digests_sent=int(deliveries.get("digest", 0)),
        invitations_sent=int(deliveries.get("invite", 0)),
        seeker_posts_scored=await _count(session, posts),
        high_risk_posts=await _count(session, posts.where(RiskAssessment.tier == "high")),
        escalations=await _count(
            session, select(func.count()).select_from(Escalation).where(Escalation.guild_id == guild_id)
        ),
    )


async def level_trend(
    session: AsyncSession,
    guild_id: int,
    since: datetime,
    *,
    responder_id: int | None = None,
) -> list[LevelPoint]:
    """Daily mean levels since ``since`` for the guild, or for one responder."""
    statement = select(
        ScoredReply.scored_at, ScoredReply.er_level, ScoredReply.ip_level, ScoredReply.ex_level
    ).where(ScoredReply.guild_id == guild_id, ScoredReply.scored_at >= since)
    if responder_id is not None:
        statement = statement.where(ScoredReply.responder_id == responder_id)
    days: dict[date, list[tuple[int, int, int]]] = defaultdict(list)
    for scored_at, er, ip, ex in (await session.execute(statement)).all():
        days[scored_at.date()].append((er, ip, ex))
    points = []
    for day in sorted(days):
        levels = days[day]
        n = len(levels)
        points.append(
            LevelPoint(
                day=day,
                er=sum(level[0] for level in levels) / n,
                ip=sum(level[1] for level in levels) / n,
                ex=sum(level[2] for level in levels) / n,
                replies=n,
            )
        )
    return points
