"""A high-risk post reaches a human only as the member's consent allows: yes, ask me first, or no."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest

from bot.db.models import EscalationConsent, EscalationState, utcnow
from tests.discord_server.faults import missing_permissions
from tests.e2e.safety_support import (
    CALM_POST,
    CRISIS_POST,
    HEAVY_POST,
    alerts,
    audit_actions,
    cases,
    go_live,
    post_crisis,
    wait_for_alert,
    wait_for_audit,
    wait_for_case,
)

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e


async def test_escalation_waits_for_consent(e2e):
    await go_live(e2e, EscalationConsent.ASK_FIRST)
    await post_crisis(e2e)
    question = await e2e.wait_for_dm(e2e.cast.alice)
    case = await wait_for_case(e2e, EscalationState.AWAITING_MEMBER)
    await e2e.settle()
    assert alerts(e2e) == []  # nobody told yet
    assert "Would you like one of the server's moderators to reach out" in question.content
    assert "988" in question.content  # crisis resources come with the question
    await e2e.click(question, f"peercare:askfirst:yes:{case.id}", user=e2e.cast.alice)
    alert = await wait_for_alert(e2e)
    assert CRISIS_POST in alert.text
    assert "would like a moderator to reach out" in alert.text


async def test_member_saying_no_keeps_moderators_out(e2e):
    await go_live(e2e, EscalationConsent.ASK_FIRST)
    await post_crisis(e2e)
    question = await e2e.wait_for_dm(e2e.cast.alice)
    case = await wait_for_case(e2e, EscalationState.AWAITING_MEMBER)
    click = await e2e.click(question, f"peercare:askfirst:no:{case.id}", user=e2e.cast.alice)
    await click.reply(lambda m: "nobody has been told" in m.content)
    declined = await wait_for_case(e2e, EscalationState.DECLINED)
    await e2e.settle()
    assert alerts(e2e) == [] and declined.excerpt is None


async def test_no_consent_sends_private_resources_only(e2e):
    await go_live(e2e, EscalationConsent.NO)
    await post_crisis(e2e)
    dm = await e2e.wait_for_dm(e2e.cast.alice)
    case = await wait_for_case(e2e, EscalationState.MEMBER_SUPPORTED)
    await e2e.settle()
    assert "988" in dm.content and "Nobody else has been told" in dm.content
    assert CRISIS_POST not in dm.content  # the member's words are never repeated back
    assert e2e.sent_to(e2e.cast.mod_alerts) == []
    assert case.excerpt is None


async def test_members_own_setting_overrides_the_server_default(e2e):
    await go_live(e2e, EscalationConsent.YES)
    command = await e2e.slash(
        "peercare safety", {"choice": "no"}, user=e2e.cast.alice, channel=e2e.cast.general
    )
    confirmation = await command.reply()
    assert confirmation.ephemeral and "No moderator is told" in confirmation.content
    await post_crisis(e2e)
    await e2e.wait_for_dm(e2e.cast.alice)
    await e2e.settle()
    assert alerts(e2e) == []


async def test_alert_pings_only_the_moderator_role(e2e):
    await go_live(e2e, EscalationConsent.YES)
    post = await post_crisis(e2e, text=CRISIS_POST + " @everyone <@&1>")
    alert = await wait_for_alert(e2e)
    role = e2e.cast.moderator_role
    assert alert.content.startswith(role.mention)
    assert alert.allowed_mentions["parse"] == [] and [str(r) for r in alert.allowed_mentions["roles"]] == [
        str(role.id)
    ]
    embed = alert.embeds[0]
    assert role.mention not in str(embed)  # the ping is outside the embed
    assert post.jump_url_path in embed["description"]
    fields = {field["name"]: field["value"] for field in embed["fields"]}
    assert fields["Tier"] == "high" and fields["Main labels"] == "crisis phrase"
    assert "I just want to die" in fields["Excerpt"]
    assert alert.custom_ids() == [
        f"peercare:alert:{action}:{(await cases(e2e))[0].id}"
        for action in ("acknowledge", "claim", "resolve", "false_alarm")
    ]


async def test_shadow_mode_sends_no_dm_and_no_alert(e2e):
    await go_live(e2e, EscalationConsent.YES, shadow=True)
    await post_crisis(e2e)
    await wait_for_audit(e2e, "escalation.shadow")
    await e2e.settle()
    assert e2e.sent_to(e2e.cast.mod_alerts) == [] and e2e.dms_to(e2e.cast.alice) == []
    assert await cases(e2e) == []


@pytest.mark.parametrize("text", [HEAVY_POST, CALM_POST])
async def test_post_below_high_tier_alerts_no_one(e2e, text):
    await go_live(e2e, EscalationConsent.YES)
    await post_crisis(e2e, text=text)
    await e2e.settle(quiet=0.5)
    assert e2e.sent_to(e2e.cast.mod_alerts) == [] and e2e.dms_to(e2e.cast.alice) == []
    assert await cases(e2e) == []


# -- consent and shadow mode read again at every send and re-ping ------------------------------------------

REPING_DUE = timedelta(minutes=31)  # past the default 30 minutes before an unacknowledged alert is re-pinged


async def _choose(e2e: Any, choice: str) -> None:
    command = await e2e.slash(
        "peercare safety", {"choice": choice}, user=e2e.cast.alice, channel=e2e.cast.general
    )
    await command.reply()


async def _live_alert(e2e: Any) -> Any:
    await go_live(e2e, EscalationConsent.YES)
    await post_crisis(e2e)
    alert = await wait_for_alert(e2e)
    await wait_for_case(e2e, EscalationState.ALERTED)
    return alert


def _reminders(e2e: Any, alert: Any) -> list[Any]:
    return [m for m in e2e.sent_to(e2e.cast.mod_alerts) if m.reference_id == alert.id]


async def _taken_back(e2e: Any, alert: Any) -> Any:
    """The alert as edited to take it back: no embed, no excerpt, the member's change of mind said."""
    taken_back = await e2e.wait_until(
        lambda: next(
            (m for m in e2e.sent_to(e2e.cast.mod_alerts) if m.id == alert.id and not m.embeds), None
        ),
        10.0,
        "the alert taken back",
    )
    await e2e.settle()
    assert CRISIS_POST not in (taken_back.content or "") and "changed their mind" in taken_back.content
    return taken_back


async def test_withdrawn_consent_stops_pending_alert(e2e):
    await go_live(e2e, EscalationConsent.YES)
    e2e.faults.next_request(
        missing_permissions(), method="POST", path=f"/channels/{e2e.cast.mod_alerts.id}/messages"
    )
    await post_crisis(e2e)

    async def waiting() -> bool:
        return any(c.last_error for c in await cases(e2e))

    await e2e.eventually(waiting, what="the alert to wait after the 403")
    await _choose(e2e, "no")  # before the permission is fixed and the sweep retries
    await e2e.bot.get_cog("Escalations").sweep()
    case = await wait_for_case(e2e, EscalationState.MEMBER_SUPPORTED)
    dm = await e2e.wait_for_dm(e2e.cast.alice, lambda m: "Nobody else has been told" in m.content)
    await e2e.settle()
    assert alerts(e2e) == [] and CRISIS_POST not in dm.content
    assert case.excerpt is None and case.consent_used == EscalationConsent.NO.value
    assert "escalation.consent_withdrawn" in await audit_actions(e2e)


async def test_shadow_mode_stops_repings(e2e):
    alert = await _live_alert(e2e)
    command = await e2e.slash("peercare setup", {"shadow_mode": True}, user=e2e.cast.moderator)
    await command.reply()
    escalations = e2e.bot.get_cog("Escalations")
    assert await escalations.reping_due(utcnow() + REPING_DUE) == 0
    await e2e.settle()
    assert _reminders(e2e, alert) == []


async def test_withdrawn_consent_stops_repings_and_takes_the_alert_back(e2e):
    alert = await _live_alert(e2e)
    await _choose(e2e, "no")
    assert await e2e.bot.get_cog("Escalations").reping_due(utcnow() + REPING_DUE) == 0
    taken_back = await _taken_back(e2e, alert)
    assert taken_back.components == [] and _reminders(e2e, alert) == []
    (case,) = await cases(e2e)
    assert case.state is EscalationState.DECLINED and case.excerpt is None


# -- choosing "no" with /peercare safety closes the member's open cases at once ----------------------------


async def test_choosing_no_takes_a_posted_alert_back_at_once(e2e):
    alert = await _live_alert(e2e)
    await _choose(e2e, "no")  # no sweep, no re-ping: the command itself takes it back
    taken_back = await _taken_back(e2e, alert)
    assert taken_back.components == []
    (case,) = await cases(e2e)
    assert case.state is EscalationState.DECLINED and case.excerpt is None and case.text_expires_at is None
    assert "escalation.consent_withdrawn" in await audit_actions(e2e)


async def test_choosing_no_closes_an_unanswered_question_at_once(e2e):
    await go_live(e2e, EscalationConsent.ASK_FIRST)
    await post_crisis(e2e)
    await e2e.wait_for_dm(e2e.cast.alice)
    await wait_for_case(e2e, EscalationState.AWAITING_MEMBER)
    await _choose(e2e, "no")
    (case,) = await cases(e2e)
    assert case.state is EscalationState.DECLINED and case.excerpt is None
    await e2e.settle()
    assert alerts(e2e) == []
