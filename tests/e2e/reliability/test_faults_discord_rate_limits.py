"""Discord answers 429 and 5xx in bursts: retried with backoff, nothing lost, nothing doubled, no request storm.

The bound on requests is the point: each rate-limited or failed request costs exactly one more, discord.py
waits ``retry_after`` before it, and it stops after five tries; after that the escalation sweep (not a tight
loop) delivers what is still owed. 5xx tests are kept few: discord.py sleeps 1 s before retrying a 500.
"""

from __future__ import annotations

import logging

import pytest

from bot.db.models import EscalationConsent, EscalationState
from tests.discord_server.faults import rate_limited, server_error
from tests.e2e._features import coaching_on, settings_for
from tests.e2e.safety_support import CRISIS_POST, alerts, cases, go_live, post_crisis, wait_for_case

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e

MESSAGES = "/channels/{channel_id}/messages"
RETRY_AFTER_S = 0.2
# discord.py's HTTPClient.request tries a request at most this many times.
DISCORD_PY_TRIES = 5


@pytest.fixture
def e2e_settings(e2e_inference_config):
    return settings_for(e2e_inference_config)


def _message_posts(e2e) -> list:
    return [r for r in e2e.requests.all if r.method == "POST" and r.route == MESSAGES]


def _retry_of(e2e, failed) -> object | None:
    """The next request to the same path after ``failed``: its retry."""
    later = [
        r
        for r in e2e.requests.all
        if r.path == failed.path and r.method == failed.method and r.at > failed.at
    ]
    return later[0] if later else None


async def _crisis_and_two_replies(e2e):
    await go_live(e2e, EscalationConsent.YES)
    await coaching_on(e2e, e2e.cast.bob)
    await coaching_on(e2e, e2e.cast.carol)
    post = await post_crisis(e2e)
    await e2e.say(e2e.cast.support, e2e.cast.bob, "That sounds so heavy. I'm here with you.", reply_to=post)
    await e2e.say(
        e2e.cast.support, e2e.cast.carol, "I'm sorry it hurts this much. What happened?", reply_to=post
    )


async def test_a_429_burst_costs_one_retry_per_refusal_and_every_message_arrives_once(e2e):
    burst = 4
    e2e.faults.next_request(
        rate_limited(retry_after=RETRY_AFTER_S), method="POST", route=MESSAGES, times=burst
    )
    await _crisis_and_two_replies(e2e)
    await e2e.wait_for_dm(e2e.cast.bob, timeout=20)
    await e2e.wait_for_dm(e2e.cast.carol, timeout=20)
    await wait_for_case(e2e, EscalationState.ALERTED, timeout=20)
    await e2e.settle(quiet=0.5)

    assert len(alerts(e2e)) == 1 and CRISIS_POST in alerts(e2e)[0].text
    assert len(e2e.dms_to(e2e.cast.bob)) == 1 and len(e2e.dms_to(e2e.cast.carol)) == 1
    refused = [r for r in _message_posts(e2e) if r.fault == "rate_limited"]
    delivered = [r for r in _message_posts(e2e) if r.status == 200]
    assert len(refused) == burst
    assert len(delivered) == 3  # the alert and two coaching notes
    assert len(_message_posts(e2e)) == len(delivered) + burst  # one retry per 429, no storm
    for request in refused:
        retry = _retry_of(e2e, request)
        assert retry is not None and retry.at - request.at >= RETRY_AFTER_S * 0.9  # it waited retry_after
    log.info(
        "429 burst: %d refused, %d message requests for %d messages",
        burst,
        len(_message_posts(e2e)),
        len(delivered),
    )


async def test_an_alert_rate_limited_past_discord_pys_retries_waits_for_the_sweep_then_arrives_once(e2e):
    await go_live(e2e, EscalationConsent.YES)
    alert_path = f"/channels/{e2e.cast.mod_alerts.id}/messages"
    e2e.faults.next_request(rate_limited(retry_after=0.05), method="POST", path=alert_path, times=None)
    await post_crisis(e2e)
    await e2e.eventually(
        lambda: _has_error(e2e, "429"), what="the case to record that Discord kept refusing", timeout=15
    )
    tries = [r for r in e2e.requests.all if r.method == "POST" and r.path == alert_path]
    assert len(tries) == DISCORD_PY_TRIES  # discord.py gave up; no loop of our own hammers Discord
    assert not e2e.dms_to(e2e.cast.owner)  # a rate limit is not a setup problem: no notice

    e2e.faults.clear()
    await e2e.bot.get_cog("Escalations").sweep()
    await wait_for_case(e2e, EscalationState.ALERTED)
    await e2e.settle()
    assert len(alerts(e2e)) == 1
    assert (
        len([r for r in e2e.requests.all if r.method == "POST" and r.path == alert_path])
        == DISCORD_PY_TRIES + 1
    )


async def _has_error(e2e, text: str) -> bool:
    found = await cases(e2e)
    return bool(found) and text in (found[0].last_error or "")


async def test_a_500_on_the_alert_and_a_dm_is_retried_after_a_second_and_delivered_once(e2e):
    e2e.faults.next_request(server_error(500), method="POST", route=MESSAGES, times=2)
    await _crisis_and_two_replies(e2e)
    await wait_for_case(e2e, EscalationState.ALERTED, timeout=20)
    await e2e.wait_for_dm(e2e.cast.bob, timeout=20)
    await e2e.wait_for_dm(e2e.cast.carol, timeout=20)
    await e2e.settle(quiet=0.5)

    failed = [r for r in _message_posts(e2e) if r.fault == "server_error_500"]
    assert len(failed) == 2
    for request in failed:
        retry = _retry_of(e2e, request)
        assert retry is not None and retry.status == 200 and retry.at - request.at >= 0.9  # discord.py's 1 s
    assert len(alerts(e2e)) == 1
    assert len(e2e.dms_to(e2e.cast.bob)) == 1 and len(e2e.dms_to(e2e.cast.carol)) == 1
    assert len(_message_posts(e2e)) == 3 + 2


async def test_a_503_on_the_alert_is_not_retried_by_discord_py_so_the_sweep_delivers_it_once(e2e):
    await go_live(e2e, EscalationConsent.YES)
    alert_path = f"/channels/{e2e.cast.mod_alerts.id}/messages"
    e2e.faults.next_request(server_error(503), method="POST", path=alert_path, times=1)
    await post_crisis(e2e)
    await e2e.eventually(lambda: _has_error(e2e, "503"), what="the case to record the 503")
    assert alerts(e2e) == []
    await e2e.bot.get_cog("Escalations").sweep()
    await wait_for_case(e2e, EscalationState.ALERTED)
    await e2e.settle()
    assert len(alerts(e2e)) == 1
    # The sweep looked for an alert the 503 might have posted before sending again.
    assert e2e.requests.find(method="GET", route=MESSAGES)


async def test_a_global_429_pauses_the_bot_and_every_message_still_arrives_once(e2e):
    e2e.faults.next_request(
        rate_limited(retry_after=0.5, is_global=True), method="POST", route=MESSAGES, times=1
    )
    await _crisis_and_two_replies(e2e)
    await e2e.wait_for_dm(e2e.cast.bob, timeout=20)
    await e2e.wait_for_dm(e2e.cast.carol, timeout=20)
    await wait_for_case(e2e, EscalationState.ALERTED, timeout=20)
    await e2e.settle(quiet=0.5)

    (refused,) = [r for r in e2e.requests.all if r.fault == "rate_limited"]
    # discord.py holds every request (not only that route) until the global limit has passed; a request
    # already on its way when the 429 came back may still arrive in the first moment.
    during = [r for r in e2e.requests.all if refused.at + 0.1 < r.at < refused.at + 0.45]
    assert during == []
    assert len(alerts(e2e)) == 1
    assert len(e2e.dms_to(e2e.cast.bob)) == 1 and len(e2e.dms_to(e2e.cast.carol)) == 1
    assert len(_message_posts(e2e)) == 3 + 1
