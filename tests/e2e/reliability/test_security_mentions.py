"""The suite-wide mention check (tests/e2e/_mention_safety.py) is active and catches a message that could ping.

It runs at the teardown of every end-to-end test over every request the bot made; these tests prove it sees
the bot's requests and flags each way a message can ping someone.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.discord_server.recorder import RecordedRequest
from tests.e2e._features import configure
from tests.e2e._mention_safety import mention_problems

pytestmark = pytest.mark.e2e

ROLE, ALERTS, GENERAL = 11, 22, 33


def _post(channel_id: int, body: dict[str, Any]) -> RecordedRequest:
    return RecordedRequest(
        method="POST",
        path=f"/channels/{channel_id}/messages",
        route="/channels/{channel_id}/messages",
        params={"channel_id": str(channel_id)},
        query={},
        json=body,
        files=[],
        headers={},
    )


def _problems(channel_id: int, body: dict[str, Any]) -> list[str]:
    return mention_problems([_post(channel_id, body)], moderator_role_id=ROLE, alert_channel_id=ALERTS)


@pytest.mark.parametrize(
    "allowed",
    [
        None,
        {"parse": ["everyone"]},
        {"parse": ["users"]},
        {"parse": ["roles"]},
        {"parse": [], "users": ["5"]},
        {"parse": [], "replied_user": True},
        {"parse": [], "roles": ["44"]},
        {"parse": [], "roles": [str(ROLE), "44"]},
    ],
)
def test_a_message_that_could_ping_is_flagged(allowed):
    body: dict[str, Any] = {"content": "hello"}
    if allowed is not None:
        body["allowed_mentions"] = allowed
    assert len(_problems(ALERTS, body)) == 1


def test_the_moderator_role_may_be_pinged_only_in_the_alert_channel():
    body = {"content": f"<@&{ROLE}> look", "allowed_mentions": {"parse": [], "roles": [str(ROLE)]}}
    assert _problems(ALERTS, body) == []
    assert len(_problems(GENERAL, body)) == 1


def test_a_message_that_pings_no_one_passes():
    assert _problems(GENERAL, {"content": "@everyone hi", "allowed_mentions": {"parse": []}}) == []


async def test_the_check_sees_every_request_of_the_test(e2e, bot_pings_no_one_but_moderators):
    answer = await configure(e2e, shadow_mode=True)

    assert answer.startswith("Saved")
    assert [server.requests for server in bot_pings_no_one_but_moderators] == [e2e.requests]
    assert any(r.route.startswith("/webhooks/") for r in e2e.requests.all)  # the setup answer was seen
