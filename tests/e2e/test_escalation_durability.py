"""Escalations are written before sending, delivered at least once across crashes, and never posted twice.

A crash is simulated by making one step of delivery hang (the process "freezes" there), then killing the
bot with ``restart_bot(crash=True)``: no shutdown, no flushing; a fresh bot starts on the same database.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from bot.db.models import EscalationConsent, EscalationState
from bot.services import escalation_cases, escalation_delivery, guild_settings
from tests.discord_server.faults import missing_permissions
from tests.e2e.safety_support import (
    CRISIS_POST,
    alerts,
    audit_actions,
    go_live,
    post_crisis,
    wait_for_alert,
    wait_for_case,
)

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e


@pytest.mark.reliability
async def test_escalation_survives_crash_and_is_not_posted_twice(e2e, freeze):
    await go_live(e2e, EscalationConsent.YES)
    frozen = freeze(escalation_delivery, "mark_alerted")  # the alert is sent, the database never hears of it
    await post_crisis(e2e)
    await frozen.wait_reached()
    assert len(alerts(e2e)) == 1
    frozen.thaw()
    await e2e.restart_bot(crash=True)
    case = await wait_for_case(e2e, EscalationState.ALERTED)
    await e2e.settle()
    assert len(alerts(e2e)) == 1
    assert case.alert_message_id == alerts(e2e)[0].id
    # It looked in the alert channel first (catch-up reads the support channel's history too: not that one).
    assert e2e.requests.find(method="GET", path=f"/channels/{e2e.cast.mod_alerts.id}/messages")


@pytest.mark.reliability
async def test_escalation_written_before_sending_is_delivered_after_a_crash(e2e, freeze):
    await go_live(e2e, EscalationConsent.YES)
    frozen = freeze(escalation_delivery, "mark_attempt")  # dies after writing the case, before sending
    await post_crisis(e2e)
    await frozen.wait_reached()
    assert (await wait_for_case(e2e)).state is EscalationState.PENDING
    assert alerts(e2e) == []
    frozen.thaw()
    await e2e.restart_bot(crash=True)
    alert = await wait_for_alert(e2e)
    await wait_for_case(e2e, EscalationState.ALERTED)
    await e2e.settle()
    assert len(alerts(e2e)) == 1 and CRISIS_POST in alert.text


def _alert_shape(alert: Any) -> tuple[list[str], list[str]]:
    """An alert's embed field names and its buttons' labels: what a moderator sees and can press."""
    (embed,) = alert.embeds
    buttons = [
        button["label"]
        for row in alert.components
        for button in row.get("components", [])
        if "label" in button
    ]
    return [field["name"] for field in embed.get("fields", [])], buttons


@pytest.mark.reliability
async def test_high_risk_post_is_escalated_even_if_the_bot_died_before_deciding(e2e, freeze):
    await go_live(e2e, EscalationConsent.YES)
    # Dies inside the unit of work that stores the post's risk and opens its case: nothing of it commits,
    # the message stays pending in the inbox and the next start processes it again, text and all.
    frozen = freeze(escalation_cases, "handle_seeker_risk")
    post = await post_crisis(e2e)
    await frozen.wait_reached()
    frozen.thaw()
    await e2e.restart_bot(crash=True)
    alert = await wait_for_alert(e2e)
    assert post.jump_url_path in alert.text
    assert CRISIS_POST in alert.text


@pytest.mark.reliability
async def test_alert_recovered_after_a_crash_carries_the_same_excerpt_and_buttons_as_a_live_one(e2e, freeze):
    await go_live(e2e, EscalationConsent.YES)
    await post_crisis(e2e)
    live = await wait_for_alert(e2e)
    await wait_for_case(e2e, EscalationState.ALERTED)
    frozen = freeze(
        escalation_delivery, "mark_attempt"
    )  # Bob's case is written, then the bot dies before sending
    await post_crisis(e2e, author=e2e.cast.bob)
    await frozen.wait_reached()
    frozen.thaw()
    await e2e.restart_bot(crash=True)
    await e2e.wait_until(lambda: len(alerts(e2e)) == 2 or None, 10.0, "the recovered alert")
    recovered = alerts(e2e)[1]
    assert CRISIS_POST in live.text and CRISIS_POST in recovered.text
    assert _alert_shape(recovered) == _alert_shape(live)
    assert "Excerpt" in _alert_shape(recovered)[0]
    assert _alert_shape(live)[1] == ["Acknowledge", "Claim", "Resolve", "False alarm"]


@pytest.mark.reliability
async def test_alert_channel_permission_error_is_recorded_and_retried(e2e):
    await go_live(e2e, EscalationConsent.YES)
    e2e.faults.next_request(
        missing_permissions(), method="POST", path=f"/channels/{e2e.cast.mod_alerts.id}/messages"
    )
    await post_crisis(e2e)
    case = await wait_for_case(e2e)
    for _ in range(100):
        if case.last_error:
            break
        await asyncio.sleep(0.05)
        case = await wait_for_case(e2e)
    assert case.state is EscalationState.PENDING and "403" in case.last_error
    assert "escalation.delivery_failed" in await audit_actions(e2e)
    await e2e.bot.get_cog("Escalations").sweep()
    await wait_for_case(e2e, EscalationState.ALERTED)
    assert len(alerts(e2e)) == 1


@pytest.mark.reliability
async def test_missing_alert_channel_keeps_the_case_until_setup_is_fixed(e2e):
    await go_live(e2e, EscalationConsent.YES, alert_channel=False)
    await post_crisis(e2e)
    for _ in range(100):
        case = await wait_for_case(e2e)
        if case.last_error:
            break
        await asyncio.sleep(0.05)
    assert "no moderator alert channel" in case.last_error and case.state is EscalationState.PENDING
    async with e2e.database.session() as session:
        await guild_settings.update(
            session, e2e.cast.guild.id, e2e.cast.moderator.id, alert_channel_id=e2e.cast.mod_alerts.id
        )
    await e2e.bot.get_cog("Escalations").sweep()
    await wait_for_alert(e2e)


@pytest.mark.reliability
async def test_member_with_closed_dms_is_not_asked_and_nobody_is_told(e2e):
    await go_live(e2e, EscalationConsent.ASK_FIRST)
    e2e.faults.block_dms(e2e.cast.alice.id)
    await post_crisis(e2e)
    case = await wait_for_case(e2e, EscalationState.DECLINED)
    await e2e.settle()
    assert "DMs are closed" in case.last_error and alerts(e2e) == []
    assert "member.dms_closed" in await audit_actions(e2e)
