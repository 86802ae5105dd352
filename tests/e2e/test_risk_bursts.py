"""Every message a member writes in a support channel is risk-judged, posts and replies alike, and a member's burst
(one channel or thread, each message within a few minutes of the last) is judged as one text: one case, one page.

The e2e risk model always answers low probabilities, so a tier comes from the crisis-phrase layer; the burst
text the model is asked about is read from the inference client's requests.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bot.db.models import EscalationConsent, EscalationState, RiskAssessment
from tests.e2e._features import wait_for_stored_reply
from tests.e2e.safety_support import (
    CALM_POST,
    CRISIS_POST,
    alerts,
    cases,
    go_live,
    wait_for_alert,
    wait_for_case,
)

pytestmark = pytest.mark.e2e

BURST = ("i can't do this anymore", "like really", "i just want to die", "sorry")
GREETINGS = ("hello", "ok", "Hi, how goes?", "thanks so much", "hey 👋", "lol")


def _risk_texts(e2e: Any) -> dict[int, str]:
    """Every risk request's text by message id (the inference client is wrapped, the model still answers)."""
    inference = e2e.bot.get_cog("Replies").pipeline.inference
    seen: dict[int, str] = {}
    original = inference.score_risk

    async def recording(request: Any) -> Any:
        seen[request.message_id] = request.text
        return await original(request)

    inference.score_risk = recording
    return seen


async def _risk_rows(e2e: Any) -> dict[int, str]:
    async with e2e.database.session() as session:
        rows = await session.scalars(select(RiskAssessment).where(RiskAssessment.source == "post"))
        return {row.message_id: row.tier for row in rows}


def _pings(e2e: Any) -> int:
    role = f"<@&{e2e.cast.moderator_role.id}>"
    return sum(role in (m.content or "") for m in e2e.sent_to(e2e.cast.mod_alerts))


async def test_burst_of_short_messages_escalates_once(e2e):
    await go_live(e2e, EscalationConsent.YES)
    texts = _risk_texts(e2e)
    sent = [await e2e.say(e2e.cast.support, e2e.cast.alice, line) for line in BURST]
    await wait_for_alert(e2e)
    await e2e.eventually(lambda: _all_judged(e2e, sent), what="every message of the burst judged")
    await e2e.settle()
    # Each message is judged with the lines of the burst before it; the last line alone means nothing.
    assert texts[sent[-1].id] == "\n".join(BURST)
    tiers = await _risk_rows(e2e)
    assert [tiers[m.id] for m in sent] == ["elevated", "elevated", "high", "high"]
    (case,) = await cases(e2e)
    assert case.member_id == e2e.cast.alice.id
    assert {case.message_id, *(m for _, m in case.more_messages or ())} == {sent[2].id, sent[3].id}
    assert len(alerts(e2e)) == 1 and _pings(e2e) == 1


async def _all_judged(e2e: Any, messages: list[Any]) -> bool:
    tiers = await _risk_rows(e2e)
    return all(m.id in tiers for m in messages)


async def test_bursts_are_per_member_and_per_channel(e2e):
    await go_live(e2e, EscalationConsent.YES)
    texts = _risk_texts(e2e)
    first = await e2e.say(e2e.cast.support, e2e.cast.alice, "i just want to die")
    other_member = await e2e.say(e2e.cast.support, e2e.cast.bob, "same here honestly")
    other_place = await e2e.say(e2e.cast.support_thread, e2e.cast.alice, "anyway")
    await e2e.eventually(
        lambda: _all_judged(e2e, [first, other_member, other_place]), what="the three messages judged"
    )
    await e2e.settle()
    assert texts[other_member.id] == "same here honestly"
    assert texts[other_place.id] == "anyway"


async def test_greeting_never_escalates(e2e):
    await go_live(e2e, EscalationConsent.YES)
    sent = [await e2e.say(e2e.cast.support, e2e.cast.carol, text) for text in GREETINGS]
    await e2e.eventually(lambda: _all_judged(e2e, sent), what="the greetings judged")
    await e2e.settle()
    tiers = await _risk_rows(e2e)
    assert {tiers[m.id] for m in sent} == {"none"}
    assert await cases(e2e) == [] and alerts(e2e) == []
    assert e2e.dms_to(e2e.cast.carol) == []  # no crisis DM either


async def test_reply_in_crisis_escalates(e2e):
    await go_live(e2e, EscalationConsent.YES)
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, CALM_POST)
    reply = await e2e.say(e2e.cast.support, e2e.cast.bob, CRISIS_POST, reply_to=post)
    alert = await wait_for_alert(e2e)
    case = await wait_for_case(e2e, EscalationState.ALERTED)
    await wait_for_stored_reply(e2e, reply.id)  # still scored for empathy with the post it answers
    assert case.member_id == e2e.cast.bob.id and case.message_id == reply.id
    assert reply.jump_url_path in alert.text and CRISIS_POST in alert.text
    assert (await _risk_rows(e2e))[post.id] == "none"
