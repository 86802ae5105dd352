"""Replies in support channels are scored with their parent; nothing outside them is read or stored."""

from __future__ import annotations

import pytest

from bot.db.models import RiskAssessment, ScoredReply
from tests.discord_server import faults
from tests.e2e._features import (
    SeekerEvents,
    add_support_channel,
    count_rows,
    eventually,
    risk_row,
    settings_for,
    stored_reply,
    wait_for_stored_reply,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def e2e_settings(e2e_inference_config):
    return settings_for(e2e_inference_config)


SEEKER_TEXT = "My exams are next week and I can't sleep."
REPLY_TEXT = "That sounds exhausting. I'm here for you."


async def test_reply_in_support_channel_is_scored_with_its_parent(e2e):
    await add_support_channel(e2e)
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)
    reply = await e2e.say(e2e.cast.support, e2e.cast.bob, REPLY_TEXT, reply_to=post)
    row = await wait_for_stored_reply(e2e, reply.id)
    assert (row.er_level, row.ip_level, row.ex_level) == (2, 1, 0)
    assert (row.parent_message_id, row.responder_id, row.seeker_id) == (
        post.id,
        e2e.cast.bob.id,
        e2e.cast.alice.id,
    )
    spans = {(s["start"], s["end"]) for s in row.rationale_spans}
    assert spans and all(0 <= start < end <= len(REPLY_TEXT) for start, end in spans)


async def test_non_support_channel_is_ignored(e2e):
    await add_support_channel(e2e)
    post = await e2e.say(e2e.cast.general, e2e.cast.alice, SEEKER_TEXT)
    reply = await e2e.say(e2e.cast.general, e2e.cast.bob, REPLY_TEXT, reply_to=post)
    await e2e.settle()
    assert await count_rows(e2e, ScoredReply) == 0
    assert await count_rows(e2e, RiskAssessment) == 0
    assert await stored_reply(e2e, reply.id) is None


async def test_removed_support_channel_is_no_longer_read(e2e):
    await add_support_channel(e2e)
    command = await e2e.slash(
        "peercare channel remove", {"channel": e2e.cast.support}, user=e2e.cast.moderator
    )
    await command.reply()
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)
    await e2e.say(e2e.cast.support, e2e.cast.bob, REPLY_TEXT, reply_to=post)
    await e2e.settle()
    assert await count_rows(e2e, ScoredReply) == 0
    assert await count_rows(e2e, RiskAssessment) == 0


async def test_thread_message_is_scored_with_the_thread_starter(e2e):
    await add_support_channel(e2e)
    reply = await e2e.say(e2e.cast.support_thread, e2e.cast.bob, REPLY_TEXT)
    row = await wait_for_stored_reply(e2e, reply.id)
    assert row.parent_message_id == e2e.cast.thread_starter.id
    assert row.seeker_id == e2e.cast.alice.id


async def test_bot_replies_are_not_scored(e2e):
    await add_support_channel(e2e)
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)
    await e2e.say(e2e.cast.support, e2e.cast.other_bot, REPLY_TEXT, reply_to=post)
    await eventually(lambda: risk_row(e2e, post.id), what="the post's risk score")
    await e2e.settle()
    assert await count_rows(e2e, ScoredReply) == 0


async def test_self_reply_is_risk_scored_as_the_seeker_speaking(e2e):
    await add_support_channel(e2e)
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)
    follow_up = await e2e.say(e2e.cast.support, e2e.cast.alice, "Also my cat is sick.", reply_to=post)
    await eventually(lambda: risk_row(e2e, follow_up.id), what="the follow-up's risk score")
    assert await stored_reply(e2e, follow_up.id) is None


async def test_empty_and_attachment_only_replies_are_not_scored(e2e):
    await add_support_channel(e2e)
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)
    await e2e.say(e2e.cast.support, e2e.cast.bob, "", reply_to=post, attachments=["hug.png"])
    await e2e.say(e2e.cast.support, e2e.cast.carol, "\u200b \u200d", reply_to=post)
    await eventually(lambda: risk_row(e2e, post.id), what="the post's risk score")
    await e2e.settle()
    assert await count_rows(e2e, ScoredReply) == 0


async def test_parent_not_in_cache_is_fetched(e2e):
    await add_support_channel(e2e)
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)
    await e2e.restart_bot()  # the new instance has never seen the parent
    reply = await e2e.say(e2e.cast.support, e2e.cast.bob, REPLY_TEXT, reply_to=post)
    row = await wait_for_stored_reply(e2e, reply.id)
    assert row.seeker_id == e2e.cast.alice.id


async def test_thread_starter_that_cannot_be_fetched_leaves_the_reply_alone(e2e):
    await add_support_channel(e2e)
    await e2e.restart_bot()  # nothing cached: the starter must be fetched
    e2e.faults.next_request(
        faults.missing_access(),
        method="GET",
        route="/channels/{channel_id}/messages/{message_id}",
        times=None,
    )
    reply = await e2e.say(e2e.cast.support_thread, e2e.cast.bob, REPLY_TEXT)
    await e2e.wait_for_request(method="GET", route="/channels/{channel_id}/messages/{message_id}")
    await e2e.settle()
    assert await stored_reply(e2e, reply.id) is None
    assert not e2e.logged_errors()


async def test_each_seeker_post_is_risk_scored_and_reported_once(e2e):
    events = SeekerEvents(e2e.bot)
    await add_support_channel(e2e)
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)
    await eventually(lambda: risk_row(e2e, post.id), what="the post's risk score")
    for responder in (e2e.cast.bob, e2e.cast.carol):
        reply = await e2e.say(e2e.cast.support, responder, REPLY_TEXT, reply_to=post)
        await wait_for_stored_reply(e2e, reply.id)
    await e2e.settle()
    (event,) = events.for_message(post.id)
    assert event.author_id == e2e.cast.alice.id and event.channel_id == e2e.cast.support.id
    assert await count_rows(e2e, RiskAssessment, RiskAssessment.message_id == post.id) == 1


async def test_thread_starter_is_risk_scored_through_the_first_reply(e2e):
    events = SeekerEvents(e2e.bot)
    await add_support_channel(e2e)
    reply = await e2e.say(e2e.cast.support_thread, e2e.cast.bob, REPLY_TEXT)
    await wait_for_stored_reply(e2e, reply.id)
    row = await eventually(lambda: risk_row(e2e, e2e.cast.thread_starter.id), what="the starter's risk score")
    assert row.author_id == e2e.cast.alice.id
    assert len(events.for_message(e2e.cast.thread_starter.id)) == 1


async def test_thread_starter_that_is_gone_leaves_the_reply_alone(e2e):
    await add_support_channel(e2e)
    await e2e.restart_bot()  # nothing cached: the starter must be fetched, and Discord answers 404
    e2e.faults.next_request(
        faults.unknown_message(),
        method="GET",
        route="/channels/{channel_id}/messages/{message_id}",
        times=None,
    )
    reply = await e2e.say(e2e.cast.support_thread, e2e.cast.bob, REPLY_TEXT)
    await e2e.wait_for_request(method="GET", route="/channels/{channel_id}/messages/{message_id}")
    await e2e.settle()
    assert await stored_reply(e2e, reply.id) is None
    assert not e2e.logged_errors()


async def test_long_non_english_reply_with_emoji_is_scored(e2e):
    await add_support_channel(e2e)
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, "Je suis épuisée, je n'en peux plus 😞")
    text = ("Ça a l'air vraiment épuisant 💛 " * 120).strip()
    reply = await e2e.say(e2e.cast.support, e2e.cast.bob, text, reply_to=post)
    row = await wait_for_stored_reply(e2e, reply.id)
    assert all(0 <= s["start"] < s["end"] <= len(text) for s in row.rationale_spans)
