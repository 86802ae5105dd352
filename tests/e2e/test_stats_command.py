"""`/peercare stats`: counts and the guild's empathy levels over time, as a private chart."""

from __future__ import annotations

import pytest

from tests.e2e._features import (
    add_support_channel,
    eventually,
    risk_row,
    settings_for,
    wait_for_stored_reply,
)

pytestmark = pytest.mark.e2e

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def e2e_settings(e2e_inference_config):
    return settings_for(e2e_inference_config)


async def test_stats_is_an_ephemeral_chart_with_counts(e2e):
    await add_support_channel(e2e)
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, "Rough week at work.")
    for responder in (e2e.cast.bob, e2e.cast.carol):
        reply = await e2e.say(e2e.cast.support, responder, "That sounds exhausting.", reply_to=post)
        await wait_for_stored_reply(e2e, reply.id)
        await eventually(lambda reply=reply: risk_row(e2e, reply.id), what="the reply's own risk judged")
    command = await e2e.slash("peercare stats", user=e2e.cast.moderator)
    answer = await command.reply(lambda m: "Replies scored" in m.content, timeout=20.0)
    assert answer.ephemeral
    assert "**Support channels:** 1" in answer.content
    assert "**Replies scored:** 2 (2 in the last 7 days) by 2 responders" in answer.content
    assert "**Messages risk-judged:** 3 (0 high risk)" in answer.content  # the post and both replies
    uploads = [f for r in e2e.requests.all if command.token in r.path for f in r.files]
    assert uploads and uploads[-1].data.startswith(PNG_MAGIC)


async def test_stats_requires_manage_server(e2e):
    command = await e2e.slash("peercare stats", user=e2e.cast.alice)
    answer = await command.reply()
    assert answer.ephemeral and "Manage Server" in answer.content
