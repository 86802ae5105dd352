"""An edited seeker post is risk-scored again: a rise in tier reaches escalation, nothing is ever lowered.

The e2e risk model answers low probabilities, so tiers come from the crisis-phrase layer (see safety_support).
"""

from __future__ import annotations

import pytest

from bot.db.models import EscalationConsent, EscalationState, utcnow
from bot.services import escalation_cases
from tests.e2e._features import SeekerEvents, eventually, risk_row
from tests.e2e.safety_support import (
    CALM_POST,
    CRISIS_POST,
    HEAVY_POST,
    alerts,
    cases,
    go_live,
    wait_for_alert,
    wait_for_case,
)

pytestmark = pytest.mark.e2e

OTHER_CALM_POST = "Work was long today, but I'm alright"


async def _scored_post(e2e, text: str, author=None):  # type: ignore[no-untyped-def]
    post = await e2e.say(e2e.cast.support, author or e2e.cast.alice, text)
    await eventually(lambda: risk_row(e2e, post.id), what="the post's risk score")
    return post


async def test_seeker_post_edited_into_crisis_alerts_moderators(e2e):
    await go_live(e2e, EscalationConsent.YES)
    events = SeekerEvents(e2e.bot)
    post = await _scored_post(e2e, CALM_POST)
    await e2e.edit(post, CRISIS_POST)
    await wait_for_alert(e2e)
    case = await wait_for_case(e2e, EscalationState.ALERTED)
    assert (case.message_id, case.member_id, case.tier) == (post.id, e2e.cast.alice.id, "high")
    assert [e.risk.tier.value for e in events.for_message(post.id)] == ["none", "high"]
    assert (await risk_row(e2e, post.id)).tier == "high"


async def test_elevated_post_edited_into_crisis_opens_its_case_once(e2e):
    await go_live(e2e, EscalationConsent.YES)
    post = await _scored_post(e2e, HEAVY_POST)
    await eventually(
        lambda: _tier_is(e2e, post.id, "elevated"), what="the elevated tier to be recorded by escalation"
    )
    await e2e.edit(post, CRISIS_POST)
    await wait_for_alert(e2e)
    await e2e.edit(post, CRISIS_POST + " tonight")
    await e2e.settle()
    assert [c.message_id for c in await cases(e2e)] == [post.id]
    assert len(alerts(e2e)) == 1


async def test_seeker_post_edit_never_lowers_its_tier_or_dispatches_again(e2e):
    await go_live(e2e, EscalationConsent.YES)
    events = SeekerEvents(e2e.bot)
    post = await _scored_post(e2e, CRISIS_POST)
    await wait_for_case(e2e, EscalationState.ALERTED)
    await e2e.edit(post, CALM_POST)
    await e2e.settle()
    assert (await risk_row(e2e, post.id)).tier == "high"
    assert len(events.for_message(post.id)) == 1
    assert len(alerts(e2e)) == 1


async def test_seeker_post_edit_that_keeps_its_tier_is_not_dispatched_again(e2e):
    await go_live(e2e, EscalationConsent.YES)
    events = SeekerEvents(e2e.bot)
    post = await _scored_post(e2e, CALM_POST)
    await e2e.edit(post, OTHER_CALM_POST)
    await e2e.settle()
    assert len(events.for_message(post.id)) == 1
    assert (await risk_row(e2e, post.id)).tier == "none"
    assert await cases(e2e) == []


async def test_thread_starter_edited_into_crisis_alerts_moderators(e2e):
    # The starter was posted before PeerCare read #support and has no replies: its edit is its first score.
    await go_live(e2e, EscalationConsent.YES)
    await e2e.edit(e2e.cast.thread_starter, CRISIS_POST)
    await wait_for_alert(e2e)
    case = await wait_for_case(e2e, EscalationState.ALERTED)
    assert case.message_id == e2e.cast.thread_starter.id


async def test_edit_of_a_post_outside_support_channels_is_not_read(e2e):
    await go_live(e2e, EscalationConsent.YES)
    post = await e2e.say(e2e.cast.general, e2e.cast.alice, CALM_POST)
    await e2e.edit(post, CRISIS_POST)
    await e2e.settle()
    assert await risk_row(e2e, post.id) is None
    assert await cases(e2e) == []


async def _tier_is(e2e, message_id: int, tier: str) -> bool:  # type: ignore[no-untyped-def]
    row = await risk_row(e2e, message_id)
    return row is not None and row.tier == tier


async def test_repeated_high_event_for_a_post_does_not_duplicate_its_case(e2e):
    await go_live(e2e, EscalationConsent.YES)
    events = SeekerEvents(e2e.bot)
    post = await _scored_post(e2e, CRISIS_POST)
    await wait_for_alert(e2e)
    await wait_for_case(e2e, EscalationState.ALERTED)
    judged = events.for_message(post.id)[0]
    again = escalation_cases.ScoredMessage(
        e2e.cast.guild.id, judged.channel_id, post.id, judged.author_id, judged.risk, "made-up excerpt"
    )
    decision = await e2e.bot.database.run(
        "judge the post again",
        lambda session: escalation_cases.handle_seeker_risk(
            session, again, defaults=None, now=utcnow(), retention_days=7
        ),
    )
    await e2e.bot.deliver_cases([decision.escalation_id])  # as a second hand-off would
    await e2e.settle()
    assert [c.message_id for c in await cases(e2e)] == [post.id]
    assert len(alerts(e2e)) == 1
