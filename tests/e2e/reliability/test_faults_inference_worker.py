"""The inference worker process is killed (SIGKILL) with replies in flight: it restarts, nothing is lost or doubled.

The bot runs the real ``worker`` backend (a separate process over the tiny models). To be sure the kill lands
while requests are in the worker's hands, the worker is first frozen (SIGSTOP), the posts and replies are
sent, and once their requests are waiting on it, it is killed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import time

import pytest

from bot.db.models import EscalationConsent, EscalationState, RiskAssessment, ScoredReply
from inference.backends.worker import WorkerClient
from tests.e2e._features import coaching_on, count_rows, settings_for
from tests.e2e.safety_support import CRISIS_POST, alerts, go_live, post_crisis, wait_for_case

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e

CALM_POST = "Work has been a lot lately and I feel stretched thin"
REPLIES = {
    "bob": ("I'm really sorry. I'm here and listening.", "That sounds draining. What would help tonight?"),
    "carol": ("Thank you for telling us. You matter.", "I feel that too sometimes. Is there a break coming?"),
}


@pytest.fixture
def e2e_inference_config(tiny_model_cache):
    # A long heartbeat timeout: the frozen worker must be found dead by the kill, not declared hung first.
    return dataclasses.replace(
        tiny_model_cache.config(empathy_levels={"ER": 2, "IP": 1, "EX": 0}),
        backend="worker",
        max_batch_size=4,
        heartbeat_interval_s=0.2,
        heartbeat_timeout_s=60.0,
        request_timeout_s=60.0,
    )


@pytest.fixture
def e2e_settings(e2e_inference_config):
    return settings_for(e2e_inference_config)


async def test_killing_the_worker_mid_batch_loses_no_reply_and_sends_no_duplicate(e2e):
    worker = e2e.bot.inference
    assert isinstance(worker, WorkerClient)
    await asyncio.wait_for(worker.wait_ready(), 60)
    # Every reply may bring a note (no interval), so a lost or doubled score shows up as a missing or extra DM.
    await go_live(e2e, EscalationConsent.YES, coaching_interval_minutes=0, coaching_daily_cap=50)
    await coaching_on(e2e, e2e.cast.bob)
    await coaching_on(e2e, e2e.cast.carol)

    first_pid = worker.pid
    assert first_pid is not None
    os.kill(first_pid, signal.SIGSTOP)
    crisis = await post_crisis(e2e)
    calm = await e2e.say(e2e.cast.support, e2e.cast.alice, CALM_POST)
    replies = []
    for member in (e2e.cast.bob, e2e.cast.carol):
        for parent, text in zip((crisis, calm), REPLIES[member.name], strict=True):
            replies.append(await e2e.say(e2e.cast.support, member, text, reply_to=parent))
    # Private state read on purpose: the requests the frozen worker holds are the ones the kill must not lose.
    await e2e.wait_until(lambda: len(worker._pending) >= len(replies), 20, "the replies to reach the worker")
    in_flight = len(worker._pending)
    e2e.expect_errors()  # the worker's death is logged as an error; checked below that it is the only one
    killed_at = time.monotonic()
    os.kill(first_pid, signal.SIGKILL)

    for member in (e2e.cast.bob, e2e.cast.carol):
        await e2e.wait_until(lambda m=member: len(e2e.dms_to(m)) >= 2, 60, f"{member.name}'s two notes")
    await wait_for_case(e2e, EscalationState.ALERTED, timeout=30)
    recovered_s = time.monotonic() - killed_at
    await e2e.settle(quiet=0.5)

    assert worker.stats.crashes == 1 and worker.pid not in (None, first_pid)
    assert worker.stats.resubmitted >= len(replies)  # the kill hit requests in flight, and they were resent
    assert len(e2e.dms_to(e2e.cast.bob)) == 2 and len(e2e.dms_to(e2e.cast.carol)) == 2
    for reply in replies:
        assert await count_rows(e2e, ScoredReply, ScoredReply.reply_message_id == reply.id) == 1
    for post in (crisis, calm):
        assert await count_rows(e2e, RiskAssessment, RiskAssessment.message_id == post.id) == 1
    assert len(alerts(e2e)) == 1 and CRISIS_POST in alerts(e2e)[0].text
    assert [(r.name, r.getMessage()) for r in e2e.logged_errors()] == [
        ("inference.backends.worker", f"inference worker (pid {first_pid}) exited with code -9")
    ]
    log.info(
        "worker kill: %d requests in flight, all answered %.1f s after the kill (restarts=%d)",
        in_flight,
        recovered_s,
        worker.stats.restarts,
    )
