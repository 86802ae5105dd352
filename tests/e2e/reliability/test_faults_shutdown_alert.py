"""An alert cut off by a clean shutdown is not an error: the case stays pending and the next start posts it once."""

from __future__ import annotations

import logging

import pytest

from bot.db.models import EscalationConsent
from tests.e2e.safety_support import alerts, go_live, post_crisis, wait_for_alert

pytestmark = pytest.mark.e2e


async def test_alert_cut_off_by_shutdown_stays_pending_and_is_posted_once_after_restart(e2e, hold, caplog):
    await go_live(e2e, EscalationConsent.YES)
    caplog.set_level(logging.WARNING, logger="cogs.escalation")
    held = hold(e2e.bot.get_cog("Escalations"), "_post_alert")
    await post_crisis(e2e)
    await held.wait_reached()
    await e2e.bot.close()  # SIGTERM arrives while the alert is about to go out: the HTTP session closes
    held.release()  # the send now meets the closed session

    def left_pending() -> bool:
        return any("left pending by shutdown" in r.getMessage() for r in caplog.records)

    await e2e.wait_until(left_pending, 10, "the cut-off alert to be logged as left pending")
    assert e2e.logged_errors() == []
    assert alerts(e2e) == []

    await e2e.restart_bot()
    await wait_for_alert(e2e)
    await e2e.settle()
    assert len(alerts(e2e)) == 1
