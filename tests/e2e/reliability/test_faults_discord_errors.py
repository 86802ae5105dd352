"""Discord refuses (403 missing permissions, 404 deleted channel): nothing crashes, the case waits, moderators are told.

Closed DMs (50007) are covered where they happen: tests/e2e/test_coaching_dm.py::test_dms_closed_stops_trying
and tests/e2e/test_escalation_durability.py::test_member_with_closed_dms_is_not_asked_and_nobody_is_told
(an "ask me first" member whose DMs are closed is not reported to anyone: their choice stands).
"""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import func, select

from bot.db.models import AuditLogEntry, EscalationConsent, EscalationState
from bot.services import guild_settings
from bot.services.escalation_delivery import MODERATOR_NOTICE_ACTION
from tests.discord_server.faults import missing_permissions, unknown_channel
from tests.e2e.safety_support import CRISIS_POST, alerts, cases, go_live, post_crisis

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e


async def _cases_failed(e2e, count: int) -> bool:
    found = await cases(e2e)
    return len(found) == count and all(c.last_error for c in found)


async def _notices_recorded(e2e) -> int:
    async with e2e.database.session() as session:
        return int(
            await session.scalar(
                select(func.count(AuditLogEntry.id)).where(AuditLogEntry.action == MODERATOR_NOTICE_ACTION)
            )
            or 0
        )


async def test_missing_permissions_in_the_alert_channel_tells_the_owner_once_and_alerts_wait(e2e):
    await go_live(e2e, EscalationConsent.YES)
    e2e.faults.next_request(
        missing_permissions(), method="POST", path=f"/channels/{e2e.cast.mod_alerts.id}/messages", times=None
    )
    await post_crisis(e2e, e2e.cast.alice)
    await post_crisis(e2e, e2e.cast.carol)
    notice = await e2e.wait_for_dm(e2e.cast.owner)
    await e2e.eventually(lambda: _cases_failed(e2e, 2), what="both cases to record the 403")
    sweeps = e2e.bot.get_cog("Escalations")
    await sweeps.sweep()
    await sweeps.sweep()
    await e2e.settle()

    assert len(e2e.dms_to(e2e.cast.owner)) == 1  # two cases, three attempts each: one notice
    assert "missing permissions" in notice.content and "/peercare setup" in notice.content
    assert CRISIS_POST not in notice.content and str(e2e.cast.alice.id) not in notice.content
    assert notice.allowed_mentions == {"parse": []}
    assert await _notices_recorded(e2e) == 1
    assert all(c.state is EscalationState.PENDING and "403" in c.last_error for c in await cases(e2e))

    setup = await e2e.slash("peercare setup", user=e2e.cast.moderator)
    assert "2 moderator alerts are waiting to be delivered" in (await setup.reply(timeout=15)).text

    e2e.faults.clear()  # a moderator fixed the channel's permissions
    await sweeps.sweep()
    await e2e.wait_until(lambda: len(alerts(e2e)) == 2, 10, "both alerts")
    await e2e.settle()
    assert len(alerts(e2e)) == 2
    assert {c.state for c in await cases(e2e)} == {EscalationState.ALERTED}


async def test_deleted_alert_channel_tells_the_owner_and_setup_to_a_new_channel_delivers(e2e):
    await go_live(e2e, EscalationConsent.YES)
    e2e.faults.next_request(unknown_channel(), path=f"/channels/{e2e.cast.mod_alerts.id}/*", times=None)
    await post_crisis(e2e)
    notice = await e2e.wait_for_dm(e2e.cast.owner)
    assert "no longer exists" in notice.content
    await e2e.eventually(lambda: _cases_failed(e2e, 1), what="the case to record the 404")
    (case,) = await cases(e2e)
    assert case.state is EscalationState.PENDING and "404" in case.last_error

    async with e2e.database.session() as session:
        await guild_settings.update(
            session, e2e.cast.guild.id, e2e.cast.moderator.id, alert_channel_id=e2e.cast.general.id
        )
    await e2e.bot.get_cog("Escalations").sweep()
    alert = await e2e.wait_for_message_in(e2e.cast.general, lambda m: bool(m.embeds))
    await e2e.settle()
    assert CRISIS_POST in alert.text
    assert len(e2e.dms_to(e2e.cast.owner)) == 1
    assert [c.state for c in await cases(e2e)] == [EscalationState.ALERTED]


async def test_owner_with_closed_dms_means_the_log_says_nobody_could_be_told(e2e, caplog):
    await go_live(e2e, EscalationConsent.YES)
    e2e.faults.block_dms(e2e.cast.owner.id)
    e2e.faults.next_request(
        missing_permissions(), method="POST", path=f"/channels/{e2e.cast.mod_alerts.id}/messages", times=None
    )
    with caplog.at_level(logging.WARNING, logger="cogs.escalation"):
        await post_crisis(e2e)
        await e2e.eventually(lambda: _cases_failed(e2e, 1), what="the case to record the 403")
        await e2e.settle()
    assert "moderators could not be told either" in caplog.text
    assert CRISIS_POST not in caplog.text
    assert await _notices_recorded(e2e) == 1  # claimed: no retry storm against a closed DM
