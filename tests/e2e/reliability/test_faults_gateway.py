"""The gateway connection drops while members post: the bot resumes, and every event is processed exactly once.

Discord delivers events at least once: after a RESUME it replays what the bot missed, and an event can arrive
twice. Either way a post gets one risk row, a reply one score row and one coaching DM, a crisis one alert.
"""

from __future__ import annotations

import logging

import pytest

from bot.db.models import EscalationConsent, EscalationState, RiskAssessment, ScoredReply
from tests.e2e._features import coaching_on, count_rows, settings_for
from tests.e2e.safety_support import alerts, go_live, post_crisis, wait_for_case

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e

CALM_POST = "Had a long week and I'm worn out, but I'm getting through it"


@pytest.fixture
def e2e_settings(e2e_inference_config):
    return settings_for(e2e_inference_config)


async def _posts_and_replies(e2e):
    """A crisis post answered by Bob, a calm post answered by Carol (both opted into coaching)."""
    crisis = await post_crisis(e2e)
    bob_reply = await e2e.say(
        e2e.cast.support, e2e.cast.bob, "I'm so sorry. I'm here with you.", reply_to=crisis
    )
    calm = await e2e.say(e2e.cast.support, e2e.cast.alice, CALM_POST)
    carol_reply = await e2e.say(
        e2e.cast.support, e2e.cast.carol, "That sounds tiring. What helped you this week?", reply_to=calm
    )
    return [crisis, calm], [bob_reply, carol_reply]


async def _everything_handled(e2e) -> None:
    await e2e.wait_for_dm(e2e.cast.bob, timeout=20)
    await e2e.wait_for_dm(e2e.cast.carol, timeout=20)
    await wait_for_case(e2e, EscalationState.ALERTED, timeout=20)
    await e2e.settle(quiet=0.5)


async def _assert_processed_once(e2e, posts, replies) -> None:
    for post in posts:
        assert await count_rows(e2e, RiskAssessment, RiskAssessment.message_id == post.id) == 1
    for reply in replies:
        assert await count_rows(e2e, ScoredReply, ScoredReply.reply_message_id == reply.id) == 1
    assert len(e2e.dms_to(e2e.cast.bob)) == 1 and len(e2e.dms_to(e2e.cast.carol)) == 1
    assert len(alerts(e2e)) == 1


async def _live(e2e) -> None:
    await go_live(e2e, EscalationConsent.YES)
    await coaching_on(e2e, e2e.cast.bob)
    await coaching_on(e2e, e2e.cast.carol)


async def test_posts_sent_while_the_connection_is_down_are_processed_once_after_resume(e2e):
    await _live(e2e)
    await e2e.gateway.drop_connection()
    posts, replies = await _posts_and_replies(e2e)  # these wait in the session's replay buffer
    await e2e.wait_until(lambda: e2e.gateway.resumes, 15, "a RESUME")
    await _everything_handled(e2e)

    (resume,) = e2e.gateway.resumes
    assert resume.replayed == len(posts) + len(replies)
    assert len(e2e.gateway.identifies) == 1  # resumed, not a new session
    await _assert_processed_once(e2e, posts, replies)


async def test_events_delivered_twice_are_processed_once(e2e):
    await _live(e2e)
    posts, replies = await _posts_and_replies(e2e)
    await _everything_handled(e2e)
    await e2e.gateway.drop_connection()
    await e2e.wait_until(lambda: e2e.gateway.resumes, 15, "a RESUME")
    seen_again: list[int] = []

    async def on_message(message) -> None:  # type: ignore[no-untyped-def]
        seen_again.append(message.id)

    e2e.bot.add_listener(on_message)
    for message in [*posts, *replies]:  # Discord re-sends what it is not sure arrived
        await e2e.server.dispatch_message("MESSAGE_CREATE", message, e2e.cast.support)
    await e2e.wait_until(lambda: len(seen_again) == 4, 10, "the bot to receive the duplicates")
    await e2e.settle(quiet=0.5)
    await _assert_processed_once(e2e, posts, replies)
