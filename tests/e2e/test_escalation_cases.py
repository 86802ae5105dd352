"""One case per member at a time: later high-risk messages join the open case (the alert is edited, no new ping);
the next case pages again only once a moderator resolved the last one."""

from __future__ import annotations

from typing import Any

import pytest

from bot.db.models import EscalationConsent, EscalationState
from tests.e2e.safety_support import alerts, cases, go_live, post_crisis, wait_for_alert, wait_for_case

pytestmark = pytest.mark.e2e

MORE_CRISIS = ("i want to end my life tonight", "sorry again. i just want to die")


def _pings(e2e: Any) -> list[Any]:
    role = f"<@&{e2e.cast.moderator_role.id}>"
    return [m for m in e2e.sent_to(e2e.cast.mod_alerts) if role in (m.content or "")]


def _field(alert: Any, prefix: str) -> str | None:
    return next((f["value"] for f in alert.embeds[0]["fields"] if f["name"].startswith(prefix)), None)


async def test_member_with_open_case_pages_once(e2e):
    await go_live(e2e, EscalationConsent.YES)
    await post_crisis(e2e)
    alert = await wait_for_alert(e2e)
    await wait_for_case(e2e, EscalationState.ALERTED)
    later = [await post_crisis(e2e, text=text) for text in MORE_CRISIS]
    shown = await e2e.wait_until(
        lambda: _field(alerts(e2e)[0], "Later messages (2)") or None, 10.0, "the alert showing both messages"
    )
    await e2e.settle()
    assert len(alerts(e2e)) == 1 and len(_pings(e2e)) == 1
    assert all(message.jump_url_path in shown for message in later)
    assert MORE_CRISIS[-1] in (_field(alerts(e2e)[0], "Latest excerpt") or "")
    (case,) = await cases(e2e)
    assert case.alert_message_id == alert.id and case.ping_count == 0 and case.alert_outdated_at is None


async def test_after_a_moderator_resolves_the_case_the_next_crisis_pages_again(e2e):
    await go_live(e2e, EscalationConsent.YES)
    await post_crisis(e2e)
    alert = await wait_for_alert(e2e)
    case = await wait_for_case(e2e, EscalationState.ALERTED)
    await e2e.click(alert, f"peercare:alert:resolve:{case.id}", user=e2e.cast.moderator)
    await wait_for_case(e2e, EscalationState.RESOLVED)
    await post_crisis(e2e, text=MORE_CRISIS[0])
    await e2e.wait_until(lambda: len(alerts(e2e)) == 2 or None, 10.0, "a second alert")
    await e2e.settle()
    assert len(_pings(e2e)) == 2 and len(await cases(e2e)) == 2
