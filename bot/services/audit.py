"""The audit trail: every consent change, escalation step and deletion, recorded with ids only."""

from __future__ import annotations

import logging
from typing import Any

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
