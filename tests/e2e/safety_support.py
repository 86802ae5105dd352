"""Shared steps for the safety e2e tests: a live guild, a crisis post, finding alerts and cases.

The risk model in the e2e bot always answers low probabilities, so a post's tier comes only from the
crisis-phrase layer (deterministic): ``CRISIS_POST`` is high tier, ``HEAVY_POST`` elevated, ``CALM_POST`` none.
"""

# Helpers take a plain ``timeout=`` like the loopback server's own waits.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import select

from bot.db.models import AuditLogEntry, Escalation, EscalationConsent, EscalationState
from bot.services import guild_settings, support_channels
from bot.services.escalation_delivery import ALERT_FOOTER_PREFIX

log = logging.getLogger(__name__)

CRISIS_POST = "I just want to die, nothing helps anymore"
HEAVY_POST = "I feel hopeless about everything this week"
CALM_POST = "Had a long day at work but I'm okay"


async def go_live(
    e2e: Any,
    consent: EscalationConsent = EscalationConsent.YES,
    *,
    shadow: bool = False,
    alert_channel: bool = True,
    **extra: Any,
) -> None:
    """A moderator has set PeerCare up: #support opted in, alerts to #mod-alerts pinging the Moderator role."""
    cast = e2e.cast
    async with e2e.database.session() as session:
        await support_channels.add(session, cast.guild.id, cast.support.id, cast.moderator.id)
        await guild_settings.update(
            session,
            cast.guild.id,
            cast.moderator.id,
            shadow_mode=shadow,
            default_escalation_consent=consent,
            alert_channel_id=cast.mod_alerts.id if alert_channel else None,
            moderator_role_id=cast.moderator_role.id,
            **extra,
        )


async def post_crisis(e2e: Any, author: Any = None, text: str = CRISIS_POST) -> Any:
    return await e2e.say(e2e.cast.support, author or e2e.cast.alice, text)


def alerts(e2e: Any) -> list[Any]:
    """The bot's escalation alerts in #mod-alerts (re-ping reminders left out)."""
    return [
        m
        for m in e2e.sent_to(e2e.cast.mod_alerts)
        if any(ALERT_FOOTER_PREFIX in ((embed.get("footer") or {}).get("text") or "") for embed in m.embeds)
    ]


async def wait_for_alert(e2e: Any, timeout: float = 10.0) -> Any:
    return await e2e.wait_until(lambda: next(iter(alerts(e2e)), None), timeout, "a moderator alert")


async def cases(e2e: Any) -> list[Escalation]:
    async with e2e.database.session() as session:
        return list(await session.scalars(select(Escalation).order_by(Escalation.id)))


async def wait_for_case(e2e: Any, state: EscalationState | None = None, timeout: float = 10.0) -> Escalation:
    """The first escalation (in ``state`` when given), polling the bot's database."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = [c for c in await cases(e2e) if state is None or c.state is state]
        if found:
            return found[0]
        if loop.time() > deadline:
            raise AssertionError(
                f"no escalation{' in state ' + state.value if state else ''} after {timeout}s"
            )
        await asyncio.sleep(0.05)


async def audit_actions(e2e: Any) -> list[str]:
    async with e2e.database.session() as session:
        return list(await session.scalars(select(AuditLogEntry.action).order_by(AuditLogEntry.id)))


async def wait_for_audit(e2e: Any, action: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while action not in await audit_actions(e2e):
        if loop.time() > deadline:
            raise AssertionError(f"no {action} audit entry after {timeout}s")
        await asyncio.sleep(0.05)
