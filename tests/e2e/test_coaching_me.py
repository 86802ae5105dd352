"""`/peercare me`: a responder sees their own empathy trend, privately."""

from __future__ import annotations

import pytest

from tests.e2e._features import add_support_channel, settings_for, wait_for_stored_reply

pytestmark = pytest.mark.e2e

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def e2e_settings(e2e_inference_config):
    return settings_for(e2e_inference_config)


def _uploaded_png(e2e, interaction) -> bytes:
    uploads = [
        f.data
        for r in e2e.requests.all
        if interaction.token in r.path
        for f in r.files
        if f.filename.endswith(".png")
    ]
    assert uploads, "no PNG was uploaded with the answer"
    return uploads[-1]


async def test_me_shows_own_trend_chart_privately(e2e):
    await add_support_channel(e2e)
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, "Rough week at work.")
    reply = await e2e.say(e2e.cast.support, e2e.cast.bob, "That sounds exhausting.", reply_to=post)
    await wait_for_stored_reply(e2e, reply.id)
    command = await e2e.slash("peercare me", user=e2e.cast.bob, channel=e2e.cast.support)
    answer = await command.reply(lambda m: "replies" in m.content, timeout=20.0)
    assert answer.ephemeral
    assert "**1 replies**" in answer.content
    assert "Emotional Reactions 2.0 · Interpretations 1.0 · Explorations 0.0" in answer.content
    assert _uploaded_png(e2e, command).startswith(PNG_MAGIC)


async def test_me_without_replies_says_so(e2e):
    command = await e2e.slash("peercare me", user=e2e.cast.carol, channel=e2e.cast.support)
    answer = await command.reply(lambda m: bool(m.content), timeout=10.0)
    assert answer.ephemeral and "haven't scored any of your replies" in answer.content
