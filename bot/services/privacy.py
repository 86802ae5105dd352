"""A member's data: show exactly what is stored about them, and erase it from every table.

Erasure is one function used by `/peercare forget-me`, by a member leaving a guild and by a guild's data
deletion, so every path removes the same things. What stays: rows that belong to someone else (a reply
another member wrote to this member's post keeps its empathy scores, with this member's id and risk removed)
and one audit entry saying that a deletion happened — without the member's id or any content.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
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


# -- what each table holds about members: the one list forget-me and the privacy report both walk ----------


@dataclass(frozen=True, slots=True)
class Mention:
    """A column naming a member in a row that is someone else's (or nobody's): shown to them, then cleared.

    ``about`` columns describe the mentioned member (a post's risk on the reply to it): shown to them, hidden
    from the row's owner, cleared with the mention. ``shows`` picks (and may rename) what the mentioned
    member sees of the row; by default its primary key, guild, the mention and ``about``.
    """

    column: str
    about: tuple[str, ...] = ()
    shows: Mapping[str, str] | None = None
    label: str | None = None


@dataclass(frozen=True, slots=True)
class MemberData:
    """How one table holds members' data.

    ``owner``: the column of the member whose row it is (shown whole, deleted with them). ``messages``: the
    owner's columns holding ids of their own Discord messages (audit entries about those go too).
    ``audit_subject``: audit entries about one of these rows use this ``subject_type`` with the row's id.
    """

    owner: str | None = None
    owner_label: str | None = None
    mentions: tuple[Mention, ...] = ()
    messages: tuple[str, ...] = ()
    audit_subject: str | None = None


# Every table is either here or in NOT_MEMBER_DATA (tests/bot/services/test_privacy.py walks the models).
# Order: the privacy report's order; deletions run children first whatever the order here.
MEMBER_DATA: dict[type[Base], MemberData] = {
    MemberConsent: MemberData(owner="user_id"),
    ScoredReply: MemberData(
        owner="responder_id",
        owner_label="scored_replies (replies you wrote)",
        messages=("reply_message_id",),
        mentions=(
            # The risk score of the post replied to belongs to its author, never to the responder.
            Mention(
                "seeker_id",
                about=("parent_risk", "parent_risk_tier"),
                shows={
                    "guild_id": "guild_id",
                    "parent_message_id": "your_message_id",
                    "reply_message_id": "reply_message_id",
                    "parent_risk_tier": "risk_tier",
                    "parent_risk": "risk",
                },
                label="scored_replies (replies to your posts: your post's risk score)",
            ),
        ),
    ),
    RiskAssessment: MemberData(owner="author_id", messages=("message_id",)),
    Escalation: MemberData(
        owner="member_id",
        messages=("message_id",),
        audit_subject="escalation",
        mentions=(Mention("acknowledged_by"), Mention("claimed_by"), Mention("resolved_by")),
    ),
    CoachingDelivery: MemberData(owner="responder_id"),
    CheckinSchedule: MemberData(owner="user_id", audit_subject="checkin_schedule"),
    Checkin: MemberData(owner="user_id", audit_subject="checkin"),
    InboxMessage: MemberData(owner="author_id", messages=("message_id",)),
    SupportChannel: MemberData(mentions=(Mention("added_by"),)),
    # Entries about the member's own things (AUDIT_SUBJECTS) go with them; where they acted on someone
    # else's, the entry stays with the actor removed.
    AuditLogEntry: MemberData(mentions=(Mention("actor_id"),)),
}
NOT_MEMBER_DATA: dict[type[Base], str] = {
    GuildSettings: "a server's settings: channel and role ids, no member",
}
# Audit subjects that are no member's: kept by forget-me (a guild's own data deletion removes them).
IMPERSONAL_AUDIT_SUBJECTS: dict[str, str] = {
    "channel": "a support channel added or removed",
    "guild": "a notice to a server's moderators about its setup",
}


def personal_audit_subjects() -> frozenset[str]:
    """Audit subject types that point at a member or at something of theirs (deleted by forget-me)."""
    declared = {rule.audit_subject for rule in MEMBER_DATA.values() if rule.audit_subject}
    return frozenset({"member", "message", *declared})


def _in_guild(column: Any, guild_id: int | None) -> ColumnElement[bool]:
    return column == guild_id if guild_id is not None else true()


def _guild_of(model: type[Base], guild_id: int | None) -> ColumnElement[bool]:
    return _in_guild(model.__table__.c.guild_id, guild_id)


def _value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "value"):
        return value.value
    return value


def _row_dict(row: Base, skip: Sequence[str] = ()) -> dict[str, Any]:
    return {
        column.key: _value(getattr(row, column.key))
        for column in row.__table__.columns
        if column.key not in skip
    }


def _owned(model: type[Base], rule: MemberData, user_id: int, guild_id: int | None) -> ColumnElement[bool]:
    assert rule.owner is not None
    return (model.__table__.c[rule.owner] == user_id) & _guild_of(model, guild_id)


def _mentioned(
    model: type[Base], rule: MemberData, mention: Mention, user_id: int, guild_id: int | None
) -> ColumnElement[bool]:
    table = model.__table__
    where = (table.c[mention.column] == user_id) & _guild_of(model, guild_id)
    if rule.owner is not None:  # their own row is shown (and deleted) whole
        where = where & (table.c[rule.owner] != user_id)
    return where


async def _member_subjects(session: AsyncSession, user_id: int, guild_id: int | None) -> dict[str, list[int]]:
    """The ids that audit entries about this member's own things use, per ``subject_type``."""
    subjects: dict[str, list[int]] = {"member": [user_id], "message": []}
    for model, rule in MEMBER_DATA.items():
        if rule.owner is None or not (rule.messages or rule.audit_subject):
            continue
        table = model.__table__
        (key,) = table.primary_key.columns
        columns = [key, *(table.c[name] for name in rule.messages)]
        rows = (await session.execute(select(*columns).where(_owned(model, rule, user_id, guild_id)))).all()
        if rule.audit_subject:
            subjects.setdefault(rule.audit_subject, []).extend(row[0] for row in rows)
        for row in rows:
            subjects["message"].extend(value for value in row[1:] if value is not None)
    return subjects


def _audit_about(subjects: dict[str, list[int]]) -> ColumnElement[bool]:
    return or_(
        *(
            (AuditLogEntry.subject_type == subject) & AuditLogEntry.subject_id.in_(ids)
            for subject, ids in subjects.items()
            if ids
        )
    )


async def describe_member_data(
    session: AsyncSession, user_id: int, guild_id: int | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Everything stored about a member, grouped by table, exactly as stored (their own text included)."""
    found: dict[str, list[dict[str, Any]]] = {}
    subjects = await _member_subjects(session, user_id, guild_id)
    for model, rule in MEMBER_DATA.items():
        table = model.__table__
        if model is AuditLogEntry:
            where = ((AuditLogEntry.actor_id == user_id) | _audit_about(subjects)) & _guild_of(
                model, guild_id
            )
            rows = (await session.scalars(select(AuditLogEntry).where(where))).all()
            if rows:
                found[table.name] = [_row_dict(row) for row in rows]
            continue
        if rule.owner is not None:
            hidden = [name for mention in rule.mentions for name in mention.about]
            owned = (await session.scalars(select(model).where(_owned(model, rule, user_id, guild_id)))).all()
            if owned:
                found[rule.owner_label or table.name] = [_row_dict(row, hidden) for row in owned]
        for mention in rule.mentions:
            shows = mention.shows or {
                name: name
                for name in (
                    *(column.key for column in table.primary_key.columns),
                    "guild_id",
                    mention.column,
                    *mention.about,
                )
            }
            columns = [table.c[name].label(shown) for name, shown in shows.items()]
            rows = (
                await session.execute(
                    select(*columns).where(_mentioned(model, rule, mention, user_id, guild_id))
                )
            ).all()
            if rows:
                label = mention.label or f"{table.name} (naming you as {mention.column})"
                found[label] = [{key: _value(value) for key, value in row._mapping.items()} for row in rows]
    return found


async def delete_member_data(
    session: AsyncSession, user_id: int, guild_id: int | None = None, *, reason: str
) -> DeletionReport:
    """Erase a member's data (in one guild, or everywhere) across every table; audit it without their id."""
    report = DeletionReport()
    subjects = await _member_subjects(session, user_id, guild_id)
    report.alerts_to_redact = [
        AlertToRedact(row.guild_id, row.alert_channel_id, row.alert_message_id)
        for row in (
            await session.execute(
                select(Escalation.guild_id, Escalation.alert_channel_id, Escalation.alert_message_id).where(
                    Escalation.id.in_(subjects.get("escalation") or [-1])
                )
            )
        ).all()
        if row.alert_channel_id and row.alert_message_id
    ]
    report.checkin_schedule_ids = list(subjects.get("checkin_schedule", []))

    # First write of the erasure: a reply of theirs being scored right now checks this row in the
    # transaction that would store it (message_inbox.still_pending), so it is either stored before this
    # erasure (and deleted by it) or not stored at all.
    report.add("message_inbox", await message_inbox.delete_member_rows(session, user_id, guild_id))

    async def run(table: str, statement: Any) -> None:
        report.add(table, (await session.execute(statement)).rowcount)

    await run(
        "audit_log",
        delete(AuditLogEntry).where(_audit_about(subjects) & _guild_of(AuditLogEntry, guild_id)),
    )
    for model, rule in MEMBER_DATA.items():
        table = model.__table__
        for mention in rule.mentions:
            cleared: dict[str, Any] = {name: None for name in mention.about}
            cleared[mention.column] = None if table.c[mention.column].nullable else ANONYMOUS_ID
            await run(
                table.name,
                update(table).where(_mentioned(model, rule, mention, user_id, guild_id)).values(cleared),
            )
    owners = {model.__table__: (model, rule) for model, rule in MEMBER_DATA.items() if rule.owner is not None}
    for table in reversed(Base.metadata.sorted_tables):  # children (check-ins) before parents (schedules)
        if table in owners and table is not InboxMessage.__table__:
            model, rule = owners[table]
            await run(table.name, delete(table).where(_owned(model, rule, user_id, guild_id)))
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
    # Every table keyed by guild (the privacy test checks that is every table), children first.
    for table in reversed(Base.metadata.sorted_tables):
        result = await session.execute(delete(table).where(table.c.guild_id == guild_id))
        report.add(table.name, result.rowcount)
    audit.record(session, "privacy.guild_data_deleted", guild_id=guild_id, rows=dict(report.rows))
    log.info("deleted data of departed guild %s: %d rows", guild_id, report.total)
    return report
