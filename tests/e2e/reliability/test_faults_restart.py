"""The bot dies between "escalation decided" and "alert sent": after the restart the one alert's buttons work.

That the alert is posted exactly once after such a crash is proven in tests/e2e/test_escalation_durability.py
(marked ``reliability``): ``test_escalation_written_before_sending_is_delivered_after_a_crash`` (died before
sending) and ``test_escalation_survives_crash_and_is_not_posted_twice`` (died after sending, before recording
it). What is added here: a moderator can act on that alert with the new process.
"""

from __future__ import annotations

import logging

import pytest

from bot.db.models import EscalationConsent, EscalationState
from bot.services import escalation_delivery
from tests.e2e.safety_support import alerts, go_live, post_crisis, wait_for_alert, wait_for_case

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    "dies_in",
    [
        "mark_attempt",  # the case is written; the alert was never sent
        "mark_alerted",  # the alert was sent; the database never heard of it
    ],
)
async def test_alert_delivered_across_a_crash_has_working_buttons(e2e, freeze, dies_in):
    await go_live(e2e, EscalationConsent.YES)
    frozen = freeze(escalation_delivery, dies_in)
    await post_crisis(e2e)
    await frozen.wait_reached()
    frozen.thaw()
    await e2e.restart_bot(crash=True)
    alert = await wait_for_alert(e2e)
    case = await wait_for_case(e2e, EscalationState.ALERTED)
    assert case.alert_message_id == alert.id

    click = await e2e.click(alert, f"peercare:alert:claim:{case.id}", user=e2e.cast.moderator)
    assert (await click.response())["type"] == 7  # the alert itself is updated
    claimed = await wait_for_case(e2e, EscalationState.CLAIMED)
    await e2e.settle()
    assert claimed.claimed_by == e2e.cast.moderator.id
    assert len(alerts(e2e)) == 1
    assert alert.find_component(f"peercare:alert:claim:{case.id}")["disabled"] is True
