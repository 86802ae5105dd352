"""The audit trail: every consent change, escalation step and deletion, recorded with ids only."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import AuditLogEntry

log = logging.getLogger(__name__)


def record(
    session: AsyncSession,
    action: str,
    *,
    guild_id: int | None,
    actor_id: int | None = None,
    subject_type: str | None = None,
    subject_id: int | None = None,
    **details: Any,
) -> AuditLogEntry:
    """Add an audit entry to the caller's unit of work (it commits with the change it describes).

    ``details`` must never contain message text: ids, states, tiers and setting names only.
    """
    entry = AuditLogEntry(
        guild_id=guild_id,
        actor_id=actor_id,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        details=details,
    )
    session.add(entry)
    log.info("audit %s guild=%s actor=%s %s=%s", action, guild_id, actor_id, subject_type, subject_id)
    return entry


class AuditSubject(Protocol):
    """A stored row an audit entry can be about: a case, a check-in, a check-in schedule."""

    @property
    def id(self) -> int: ...

    @property
    def guild_id(self) -> int: ...


def record_about(
    session: AsyncSession,
    action: str,
    subject: AuditSubject,
    *,
    subject_type: str,
    actor_id: int | None = None,
    **details: Any,
) -> AuditLogEntry:
    """``record`` an entry about one stored row: filed under the row's own guild, with the row's id as subject.

    Forget-me deletes a member's entries by (``subject_type``, id) (``privacy.MEMBER_DATA``), so the pair is
    always taken from the row itself, never written out again at each call.
    """
    return record(
        session,
        action,
        guild_id=subject.guild_id,
        actor_id=actor_id,
        subject_type=subject_type,
        subject_id=subject.id,
        **details,
    )
