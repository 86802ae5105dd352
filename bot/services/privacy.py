"""A member's data: show exactly what is stored about them, and erase it from every table.

Erasure is one function used by `/peercare forget-me`, by a member leaving a guild and by a guild's data
deletion, so every path removes the same things. What stays: rows that belong to someone else (a reply
another member wrote to this member's post keeps its empathy scores, with this member's id and risk removed)
and one audit entry saying that a deletion happened — without the member's id or any content.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import (
    AuditLogEntry,
    Base,
    Checkin,
    CheckinSchedule,
    CoachingDelivery,
    Escalation,
    GuildSettings,
    InboxMessage,
    MemberConsent,
    RiskAssessment,
    ScoredReply,
    SupportChannel,
)
from bot.services import audit, message_inbox

log = logging.getLogger(__name__)

# Discord ids are never 0: an anonymised reference in a column that must not be NULL.
ANONYMOUS_ID = 0


@dataclass(frozen=True, slots=True)
class AlertToRedact:
    guild_id: int
    channel_id: int
    message_id: int


@dataclass
class DeletionReport:
    """What an erasure touched: counts per table, and what the Discord side must still clean up."""

    rows: dict[str, int] = field(default_factory=dict)
    alerts_to_redact: list[AlertToRedact] = field(default_factory=list)
    checkin_schedule_ids: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    def add(self, table: str, count: int | None) -> None:
        if count:
            self.rows[table] = self.rows.get(table, 0) + count


def _in_guild(column: Any, guild_id: int | None) -> ColumnElement[bool]:
    return column == guild_id if guild_id is not None else true()


def _row_dict(row: Base, skip: Sequence[str] = ()) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for column in row.__table__.columns:
        if column.key in skip:
            continue
        value = getattr(row, column.key)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif hasattr(value, "value"):
            value = value.value
        values[column.key] = value
    return values


async def describe_member_data(
    session: AsyncSession, user_id: int, guild_id: int | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Everything stored about a member, grouped by table, exactly as stored (their own text included)."""
    found: dict[str, list[dict[str, Any]]] = {}

    async def collect(name: str, model: type[Base], where: Any, skip: Sequence[str] = ()) -> None:
        rows = (await session.scalars(select(model).where(where))).all()
        if rows:
            found[name] = [_row_dict(row, skip) for row in rows]

    await collect(
        "member_consent",
        MemberConsent,
        (MemberConsent.user_id == user_id) & _in_guild(MemberConsent.guild_id, guild_id),
    )
    await collect(
        "scored_replies (replies you wrote)",
        ScoredReply,
        (ScoredReply.responder_id == user_id) & _in_guild(ScoredReply.guild_id, guild_id),
        # The risk score of the post replied to belongs to its author, never to the responder.
        skip=("parent_risk", "parent_risk_tier"),
    )
    # Replies others wrote to this member's posts: only what is about this member (their post's risk).
    about_posts = (
        await session.execute(
            select(
                ScoredReply.guild_id,
                ScoredReply.parent_message_id,
                ScoredReply.reply_message_id,
                ScoredReply.parent_risk_tier,
                ScoredReply.parent_risk,
            ).where((ScoredReply.seeker_id == user_id) & _in_guild(ScoredReply.guild_id, guild_id))
        )
    ).all()
    if about_posts:
        found["scored_replies (replies to your posts: your post's risk score)"] = [
            {
                "guild_id": row.guild_id,
                "your_message_id": row.parent_message_id,
                "reply_message_id": row.reply_message_id,
                "risk_tier": row.parent_risk_tier,
                "risk": row.parent_risk,
            }
            for row in about_posts
        ]
    await collect(
        "risk_assessments",
        RiskAssessment,
        (RiskAssessment.author_id == user_id) & _in_guild(RiskAssessment.guild_id, guild_id),
    )
    await collect(
        "escalations",
        Escalation,
        (Escalation.member_id == user_id) & _in_guild(Escalation.guild_id, guild_id),
    )
    await collect(
        "coaching_deliveries",
        CoachingDelivery,
        (CoachingDelivery.responder_id == user_id) & _in_guild(CoachingDelivery.guild_id, guild_id),
    )
    await collect(
        "checkin_schedules",
        CheckinSchedule,
        (CheckinSchedule.user_id == user_id) & _in_guild(CheckinSchedule.guild_id, guild_id),
    )
    await collect("checkins", Checkin, (Checkin.user_id == user_id) & _in_guild(Checkin.guild_id, guild_id))
    await collect(
        "message_inbox",
        InboxMessage,
        (InboxMessage.author_id == user_id) & _in_guild(InboxMessage.guild_id, guild_id),
    )
    await collect(
        "audit_log",
        AuditLogEntry,
        _audit_about(user_id) & _in_guild(AuditLogEntry.guild_id, guild_id),
    )
    return found


def _audit_about(user_id: int) -> ColumnElement[bool]:
    return or_(
        AuditLogEntry.actor_id == user_id,
        (AuditLogEntry.subject_type == "member") & (AuditLogEntry.subject_id == user_id),
    )


async def delete_member_data(
    session: AsyncSession, user_id: int, guild_id: int | None = None, *, reason: str
) -> DeletionReport:
    """Erase a member's data (in one guild, or everywhere) across every table; audit it without their id."""
    report = DeletionReport()
    escalations = (
        await session.scalars(
            select(Escalation).where(
                (Escalation.member_id == user_id) & _in_guild(Escalation.guild_id, guild_id)
            )
        )
    ).all()
    escalation_ids = [row.id for row in escalations]
    report.alerts_to_redact = [
        AlertToRedact(row.guild_id, row.alert_channel_id, row.alert_message_id)
        for row in escalations
        if row.alert_channel_id and row.alert_message_id
    ]
    schedules = (
        await session.execute(
            select(CheckinSchedule.id).where(
                (CheckinSchedule.user_id == user_id) & _in_guild(CheckinSchedule.guild_id, guild_id)
            )
        )
    ).scalars()
    report.checkin_schedule_ids = list(schedules)
    checkin_ids = list(
        (
            await session.execute(
                select(Checkin.id).where((Checkin.user_id == user_id) & _in_guild(Checkin.guild_id, guild_id))
            )
        ).scalars()
    )

    async def run(table: str, statement: Any) -> None:
        report.add(table, (await session.execute(statement)).rowcount)

    # First write of the erasure: a reply of theirs being scored right now checks this row in the
    # transaction that would store it (message_inbox.still_pending), so it is either stored before this
    # erasure (and deleted by it) or not stored at all.
    report.add("message_inbox", await message_inbox.delete_member_rows(session, user_id, guild_id))

    # Audit entries about the member's own cases and choices go with them; entries where they acted on
    # someone else's case stay, with the actor removed.
    await run(
        "audit_log",
        delete(AuditLogEntry).where(
            _in_guild(AuditLogEntry.guild_id, guild_id)
            & or_(
                (AuditLogEntry.subject_type == "member") & (AuditLogEntry.subject_id == user_id),
                (AuditLogEntry.subject_type == "escalation")
                & AuditLogEntry.subject_id.in_(escalation_ids or [-1]),
                (AuditLogEntry.subject_type == "checkin") & AuditLogEntry.subject_id.in_(checkin_ids or [-1]),
                (AuditLogEntry.subject_type == "checkin_schedule")
                & AuditLogEntry.subject_id.in_(report.checkin_schedule_ids or [-1]),
            )
        ),
    )
    await run(
        "audit_log",
        update(AuditLogEntry)
        .where((AuditLogEntry.actor_id == user_id) & _in_guild(AuditLogEntry.guild_id, guild_id))
        .values(actor_id=None),
    )
    await run(
        "member_consent",
        delete(MemberConsent).where(
            (MemberConsent.user_id == user_id) & _in_guild(MemberConsent.guild_id, guild_id)
        ),
    )
    await run(
        "scored_replies",
        delete(ScoredReply).where(
            (ScoredReply.responder_id == user_id) & _in_guild(ScoredReply.guild_id, guild_id)
        ),
    )
    await run(
        "scored_replies",
        update(ScoredReply)
        .where((ScoredReply.seeker_id == user_id) & _in_guild(ScoredReply.guild_id, guild_id))
        .values(seeker_id=ANONYMOUS_ID, parent_risk=None, parent_risk_tier=None),
    )
    await run(
        "risk_assessments",
        delete(RiskAssessment).where(
            (RiskAssessment.author_id == user_id) & _in_guild(RiskAssessment.guild_id, guild_id)
        ),
    )
    await run("escalations", delete(Escalation).where(Escalation.id.in_(escalation_ids or [-1])))
    for column in ("acknowledged_by", "claimed_by", "resolved_by"):
        attribute = getattr(Escalation, column)
        await run(
            "escalations",
            update(Escalation)
            .where((attribute == user_id) & _in_guild(Escalation.guild_id, guild_id))
            .values({column: None}),
        )
    await run(
        "coaching_deliveries",
        delete(CoachingDelivery).where(
            (CoachingDelivery.responder_id == user_id) & _in_guild(CoachingDelivery.guild_id, guild_id)
        ),
    )
    await run("checkins", delete(Checkin).where(Checkin.id.in_(checkin_ids or [-1])))
    await run(
        "checkin_schedules",
        delete(CheckinSchedule).where(CheckinSchedule.id.in_(report.checkin_schedule_ids or [-1])),
    )
    await run(
        "support_channels",
        update(SupportChannel)
        .where((SupportChannel.added_by == user_id) & _in_guild(SupportChannel.guild_id, guild_id))
        .values(added_by=ANONYMOUS_ID),
    )
    audit.record(
        session,
        "privacy.member_data_deleted",
        guild_id=guild_id,
        reason=reason,
        rows=dict(report.rows),
    )
    log.info("deleted member data (%s): %d rows", reason, report.total)
    return report


async def delete_guild_data(session: AsyncSession, guild_id: int) -> DeletionReport:
    """Erase everything a guild left behind (after its grace period); one content-free audit entry remains."""
    report = DeletionReport()
    report.checkin_schedule_ids = list(
        (
            await session.execute(select(CheckinSchedule.id).where(CheckinSchedule.guild_id == guild_id))
        ).scalars()
    )
    for model in (
        Checkin,
        CheckinSchedule,
        CoachingDelivery,
        Escalation,
        RiskAssessment,
        ScoredReply,
        InboxMessage,
        MemberConsent,
        SupportChannel,
        AuditLogEntry,
        GuildSettings,
    ):
        result = await session.execute(delete(model).where(model.guild_id == guild_id))  # type: ignore[attr-defined]
        report.add(model.__tablename__, result.rowcount)
    audit.record(session, "privacy.guild_data_deleted", guild_id=guild_id, rows=dict(report.rows))
    log.info("deleted data of departed guild %s: %d rows", guild_id, report.total)
    return report
