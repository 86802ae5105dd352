"""A reply in an opt-in channel reaches the inference path together with its parent (the seeker's post)."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from bot.db.models import ScoredReply

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e


async def _opt_in_support(e2e) -> None:
    command = await e2e.slash("peercare channel add", {"channel": e2e.cast.support}, user=e2e.cast.moderator)
    await command.reply()


async def _scored(e2e, reply_id: int) -> ScoredReply | None:
    async with e2e.database.session() as session:
        return await session.scalar(select(ScoredReply).where(ScoredReply.reply_message_id == reply_id))


async def test_reply_is_scored_with_its_parent_by_the_models(e2e):
    await _opt_in_support(e2e)
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, "I failed my exam and feel like giving up")
    reply = await e2e.say(
        e2e.cast.support, e2e.cast.bob, "That sounds so hard. What happened in the exam?", reply_to=post
    )
    scored = await e2e.eventually(lambda: _scored(e2e, reply.id), timeout=20, what="the reply to be scored")
    assert (scored.parent_message_id, scored.seeker_id, scored.responder_id) == (
        post.id,
        e2e.cast.alice.id,
        e2e.cast.bob.id,
    )
    # The tiny models are forced to ER 2 / IP 1 / EX 0 with every token a rationale: they really ran.
    assert (scored.er_level, scored.ip_level, scored.ex_level) == (2, 1, 0)
    assert scored.rationale_spans


async def test_thread_message_is_scored_with_the_thread_starter_as_parent(e2e):
    await _opt_in_support(e2e)
    reply = await e2e.say(e2e.cast.support_thread, e2e.cast.carol, "I'm here with you. How are you sleeping?")
    scored = await e2e.eventually(lambda: _scored(e2e, reply.id), timeout=20, what="the thread reply")
    assert scored.parent_message_id == e2e.cast.thread_starter.id


async def test_reply_outside_support_channels_is_not_read(e2e):
    await _opt_in_support(e2e)
    post = await e2e.say(e2e.cast.general, e2e.cast.alice, "Anyone up for a game later?")
    reply = await e2e.say(e2e.cast.general, e2e.cast.bob, "Sure, after dinner", reply_to=post)
    # A later reply in #support is scored, so the bot has handled the earlier one by then.
    seeker = await e2e.say(e2e.cast.support, e2e.cast.alice, "Rough day again")
    marker = await e2e.say(
        e2e.cast.support, e2e.cast.bob, "Sorry to hear that, want to talk?", reply_to=seeker
    )
    await e2e.eventually(lambda: _scored(e2e, marker.id), timeout=20, what="the #support reply")
    assert await _scored(e2e, reply.id) is None
