"""A burst of replies to a crisis post behind a saturated tiny inference queue: coaching is shed, safety is not.

The real bot with a queue of 2 and no coaching wait: replies to a post whose risk is already being scored go
at coaching priority, so those past the bound are shed (inbox: skipped, "shed"), while the post itself is
still escalated exactly once.
"""

from __future__ import annotations

import dataclasses

import pytest

from bot.db.models import InboxOutcome
from bot.services import message_inbox
from tests.e2e._features import eventually, settings_for
from tests.e2e.safety_support import alerts, go_live, post_crisis, wait_for_alert

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]

REPLIES = 30
REPLY_TEXT = "I'm here with you. Can you tell me where you are right now?"


@pytest.fixture
def e2e_inference_config(tiny_model_cache):
    return dataclasses.replace(
        tiny_model_cache.config(empathy_levels={"ER": 2, "IP": 1, "EX": 0}),
        queue_size=2,
        max_batch_size=2,
        max_wait_ms=100.0,  # each batch gathers for 0.1 s: far slower than the burst arrives
        coaching_wait_s=0.0,  # past the bound, coaching is shed at once
    )


@pytest.fixture
def e2e_settings(e2e_inference_config):
    return settings_for(e2e_inference_config)


async def _outcomes(e2e, message_ids: list[int]) -> list[tuple[InboxOutcome, str | None]]:  # type: ignore[no-untyped-def]
    async def all_finished() -> list[tuple[InboxOutcome, str | None]] | None:
        async with e2e.database.session() as session:
            found = [await message_inbox.outcome_of(session, message_id) for message_id in message_ids]
        if any(row is None or row[0] is InboxOutcome.PENDING for row in found):
            return None
        return found  # type: ignore[return-value]

    return await eventually(all_finished, timeout=60, what="every message to get its outcome")


async def _crisis_post_and_a_burst_of_replies(e2e):  # type: ignore[no-untyped-def]
    await go_live(e2e)
    post = await post_crisis(e2e)
    responders = (e2e.cast.bob, e2e.cast.carol)
    replies = [
        await e2e.say(e2e.cast.support, responders[i % 2], f"{REPLY_TEXT} ({i})", reply_to=post)
        for i in range(REPLIES)
    ]
    return post, replies


async def test_crisis_post_is_escalated_once_while_replies_to_it_are_shed(e2e) -> None:
    post, replies = await _crisis_post_and_a_burst_of_replies(e2e)
    await _outcomes(e2e, [post.id, *(reply.id for reply in replies)])
    await wait_for_alert(e2e)
    await e2e.settle()
    assert len(alerts(e2e)) == 1


async def test_replies_past_the_queue_bound_end_skipped_as_shed(e2e) -> None:
    post, replies = await _crisis_post_and_a_burst_of_replies(e2e)
    outcomes = await _outcomes(e2e, [post.id, *(reply.id for reply in replies)])
    assert outcomes[0] == (InboxOutcome.SCORED, None)
    reply_outcomes = set(outcomes[1:])
    assert reply_outcomes <= {(InboxOutcome.SCORED, None), (InboxOutcome.SKIPPED, "shed")}
    assert (InboxOutcome.SKIPPED, "shed") in reply_outcomes
