"""Moderator alerts: buttons that survive restarts, only for moderators, each step recorded; re-pings."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from bot.db.models import EscalationConsent, EscalationState, utcnow
from bot.services.escalation_delivery import MAX_REPINGS
from tests.e2e.safety_support import (
    audit_actions,
    go_live,
    post_crisis,
    wait_for_alert,
    wait_for_case,
)

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e


async def _alert(e2e):
    await go_live(e2e, EscalationConsent.YES)
    await post_crisis(e2e)
    alert = await wait_for_alert(e2e)
    case = await wait_for_case(e2e, EscalationState.ALERTED)
    return alert, case


def _status(alert) -> str:
    return next(f["value"] for f in alert.embeds[0]["fields"] if f["name"] == "Status")


@pytest.mark.reliability
async def test_alert_buttons_survive_restart(e2e):
    alert, case = await _alert(e2e)
    await e2e.restart_bot()
    click = await e2e.click(alert, f"peercare:alert:acknowledge:{case.id}", user=e2e.cast.moderator)
    assert (await click.response())["type"] == 7  # the alert itself is updated
    acknowledged = await wait_for_case(e2e, EscalationState.ACKNOWLEDGED)
    assert acknowledged.acknowledged_by == e2e.cast.moderator.id and acknowledged.acknowledged_at is not None
    assert _status(alert) == f"Acknowledged by {e2e.cast.moderator.mention}"


async def test_only_moderators_can_press_alert_buttons(e2e):
    alert, case = await _alert(e2e)
    click = await e2e.click(alert, f"peercare:alert:claim:{case.id}", user=e2e.cast.bob)
    refusal = await click.reply()
    assert refusal.ephemeral and "Only moderators" in refusal.content
    await e2e.settle()
    assert (await wait_for_case(e2e)).state is EscalationState.ALERTED


async def test_a_press_while_the_case_desk_is_away_is_answered_restarting_and_changes_nothing(e2e):
    """Between a restart and the escalation cog's load no desk takes presses: the moderator is told to try again."""
    from bot.app import RESTARTING

    alert, case = await _alert(e2e)
    desk, e2e.bot.case_desk = e2e.bot.case_desk, None
    try:
        click = await e2e.click(alert, f"peercare:alert:acknowledge:{case.id}", user=e2e.cast.moderator)
        answer = await click.reply()
    finally:
        e2e.bot.case_desk = desk
    assert answer.ephemeral and answer.content == RESTARTING
    await e2e.settle()
    assert (await wait_for_case(e2e)).state is EscalationState.ALERTED


async def test_claim_then_resolve_records_each_step_in_the_audit_log(e2e):
    alert, case = await _alert(e2e)
    await e2e.click(alert, f"peercare:alert:claim:{case.id}", user=e2e.cast.moderator)
    await wait_for_case(e2e, EscalationState.CLAIMED)
    await e2e.click(alert, f"peercare:alert:resolve:{case.id}", user=e2e.cast.owner)
    resolved = await wait_for_case(e2e, EscalationState.RESOLVED)
    assert (resolved.claimed_by, resolved.resolved_by) == (e2e.cast.moderator.id, e2e.cast.owner.id)
    actions = await audit_actions(e2e)
    assert (
        actions.index("escalation.alerted")
        < actions.index("escalation.claim")
        < actions.index("escalation.resolve")
    )
    assert all(button.get("disabled") for button in alert.buttons())


async def test_false_alarm_closes_the_alert(e2e):
    alert, case = await _alert(e2e)
    await e2e.click(alert, f"peercare:alert:false_alarm:{case.id}", user=e2e.cast.moderator)
    closed = await wait_for_case(e2e, EscalationState.FALSE_ALARM)
    assert closed.resolved_by == e2e.cast.moderator.id
    assert all(button.get("disabled") for button in alert.buttons())
    assert _status(alert) == f"Marked as a false alarm by {e2e.cast.moderator.mention}"


async def test_unacknowledged_alert_is_repinged(e2e):
    alert, _case = await _alert(e2e)
    escalations = e2e.bot.get_cog("Escalations")
    assert await escalations.reping_due(utcnow() + timedelta(minutes=10)) == 0  # not yet: 30 min by default
    assert await escalations.reping_due(utcnow() + timedelta(minutes=31)) == 1
    reminder = await e2e.wait_for_message_in(e2e.cast.mod_alerts, lambda m: m.reference_id == alert.id)
    role = e2e.cast.moderator_role
    assert reminder.content.startswith(role.mention) and "still unacknowledged" in reminder.content
    assert [str(r) for r in reminder.allowed_mentions["roles"]] == [str(role.id)]


async def test_repings_stop_after_a_few(e2e):
    alert, _case = await _alert(e2e)
    escalations = e2e.bot.get_cog("Escalations")
    sent = [
        await escalations.reping_due(utcnow() + timedelta(minutes=31 * n)) for n in range(1, MAX_REPINGS + 3)
    ]
    assert sum(sent) == MAX_REPINGS
    await e2e.settle()
    assert len([m for m in e2e.sent_to(e2e.cast.mod_alerts) if m.reference_id == alert.id]) == MAX_REPINGS


async def test_acknowledged_alert_is_not_repinged(e2e):
    alert, case = await _alert(e2e)
    await e2e.click(alert, f"peercare:alert:acknowledge:{case.id}", user=e2e.cast.moderator)
    await wait_for_case(e2e, EscalationState.ACKNOWLEDGED)
    assert await e2e.bot.get_cog("Escalations").reping_due(utcnow() + timedelta(hours=2)) == 0
