"""Moderators' verdicts teach the settings: alert precision in `/peercare stats`, the threshold what-if in setup.

The e2e risk model answers 0.01 for every label, so a post is high either by a crisis phrase (``CRISIS_POST``)
or because the guild's high threshold is set below 0.01; a what-if at 0.5 separates the two.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.db.models import Escalation, EscalationConsent, EscalationState, GuildSettings, utcnow
from tests.e2e._features import configure, settings_for
from tests.e2e.safety_support import CALM_POST, alerts, cases, go_live, post_crisis

pytestmark = pytest.mark.e2e


@pytest.fixture
def e2e_settings(e2e_inference_config):
    return settings_for(e2e_inference_config)


async def _alerted_case(e2e, author, text: str):
    """Post as ``author``; returns (the moderator alert, its escalation) once the alert is out."""
    await post_crisis(e2e, author, text)

    async def alerted():
        return [c for c in await cases(e2e) if c.member_id == author.id and c.alert_message_id is not None]

    found = await e2e.eventually(alerted, timeout=10, what=f"an alert for {author.name}")
    case = found[0]
    alert = await e2e.wait_until(
        lambda: next((m for m in alerts(e2e) if m.id == case.alert_message_id), None), 10, "the alert"
    )
    return alert, case


async def _verdict(e2e, alert, case, action: str, state: EscalationState) -> None:
    await e2e.click(alert, f"peercare:alert:{action}:{case.id}", user=e2e.cast.moderator)

    async def judged():
        return [c for c in await cases(e2e) if c.id == case.id and c.state is state]

    await e2e.eventually(judged, timeout=10, what=f"case {case.id} {state.value}")


async def _one_false_alarm_by_threshold_one_resolved_crisis(e2e) -> None:
    """A calm post alerted only because the threshold is tiny (false alarm); a crisis phrase (resolved)."""
    await go_live(e2e, EscalationConsent.YES)
    await configure(e2e, high_threshold="0.005", elevated_threshold="0.005")
    alert, case = await _alerted_case(e2e, e2e.cast.bob, CALM_POST)
    await _verdict(e2e, alert, case, "false_alarm", EscalationState.FALSE_ALARM)
    alert, case = await _alerted_case(e2e, e2e.cast.alice, "I just want to die, nothing helps anymore")
    await _verdict(e2e, alert, case, "resolve", EscalationState.RESOLVED)


async def test_stats_shows_alert_precision(e2e):
    await _one_false_alarm_by_threshold_one_resolved_crisis(e2e)
    command = await e2e.slash("peercare stats", user=e2e.cast.moderator)
    answer = await command.reply(lambda m: "Risk alerts" in m.text, timeout=20.0)
    assert answer.ephemeral
    precision = answer.embeds[0]["description"]
    assert (
        "**Risk alerts, last 90 days:** 2 alerts · 1 false alarm · 1 resolved — precision 50% (1 of 2 verdicts)"
        in precision
    )
    assert "• week of " in precision and "`/peercare threshold-whatif`" in precision


async def test_stats_precision_fits_thirteen_busy_weeks(e2e):
    await go_live(e2e, EscalationConsent.YES)
    now = utcnow()
    async with e2e.database.session() as session:
        for week in range(13):
            for n, state in enumerate([EscalationState.FALSE_ALARM] * 333 + [EscalationState.ALERTED] * 444):
                session.add(
                    Escalation(
                        guild_id=e2e.cast.guild.id,
                        message_id=week * 1000 + n,
                        member_id=e2e.cast.alice.id,
                        kind="post",
                        tier="high",
                        state=state,
                        alerted_at=now - timedelta(days=7 * week),
                    )
                )
    command = await e2e.slash("peercare stats", user=e2e.cast.moderator)
    answer = await command.reply(lambda m: "Risk alerts" in m.text, timeout=20.0)
    assert answer.embeds[0]["description"].count("• week of ") >= 13


async def test_setup_shows_threshold_what_if(e2e):
    await _one_false_alarm_by_threshold_one_resolved_crisis(e2e)
    text = await configure(e2e, high_threshold="0.5")
    assert text.startswith("Saved.")
    assert "What the new high threshold would have done" in text
    assert "High-tier messages: 2 with the previous thresholds → 1 (of 2 scored messages)" in text
    assert "Moderator alerts: 1 of the 2 sent would still have been sent" in text
    assert "False alarms: 1 → 0" in text
    assert "Resolved cases it would have missed: 0 of 1" in text
    assert "1 alert came from a crisis phrase" in text


async def test_threshold_whatif_is_advice_only(e2e):
    await _one_false_alarm_by_threshold_one_resolved_crisis(e2e)
    async with e2e.database.session() as session:
        before = (await session.get(GuildSettings, e2e.cast.guild.id)).risk_thresholds
    command = await e2e.slash("peercare threshold-whatif", {"high_threshold": "0.5"}, user=e2e.cast.moderator)
    answer = await command.reply(timeout=15.0)
    assert answer.ephemeral
    assert "What `high_threshold: 0.5` would have done" in answer.content
    assert "High-tier messages: 2 with your current thresholds → 1" in answer.content
    assert "False alarms: 1 → 0" in answer.content
    assert (
        "Advice only: nothing was changed. To use it: `/peercare setup high_threshold:0.5`" in answer.content
    )
    await e2e.settle()
    async with e2e.database.session() as session:
        assert (await session.get(GuildSettings, e2e.cast.guild.id)).risk_thresholds == before


async def test_threshold_whatif_refuses_a_threshold_setup_would_refuse(e2e):
    await go_live(e2e, EscalationConsent.YES)
    command = await e2e.slash(
        "peercare threshold-whatif", {"high_threshold": "lots"}, user=e2e.cast.moderator
    )
    answer = await command.reply(timeout=15.0)
    assert answer.ephemeral and "is not a number" in answer.content


async def test_threshold_whatif_requires_manage_server(e2e):
    command = await e2e.slash("peercare threshold-whatif", {"high_threshold": "0.9"}, user=e2e.cast.alice)
    answer = await command.reply()
    assert answer.ephemeral and "Manage Server" in answer.content


async def test_threshold_whatif_with_no_history_says_so(e2e):
    command = await e2e.slash("peercare threshold-whatif", {"high_threshold": "0.9"}, user=e2e.cast.moderator)
    answer = await command.reply(timeout=15.0)
    assert "nothing to compare yet" in answer.content
