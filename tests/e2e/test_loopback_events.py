"""Message events reach discord.py in the shapes Discord sends: replies, threads, edits, deletes, attachments, bots."""

from __future__ import annotations

import logging

import discord
import pytest

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e


def _cached(e2e, message_id: int) -> discord.Message | None:
    return next((m for m in e2e.bot.cached_messages if m.id == message_id), None)


async def _seen(e2e, message) -> discord.Message:
    return await e2e.wait_until(lambda: _cached(e2e, message.id), 5, f"message {message.id} to reach the bot")


async def test_reply_carries_its_resolved_parent(e2e):
    post = await e2e.say(e2e.cast.general, e2e.cast.alice, "first")
    reply = await _seen(e2e, await e2e.say(e2e.cast.general, e2e.cast.bob, "second", reply_to=post))
    assert reply.type is discord.MessageType.reply
    assert reply.reference.message_id == post.id
    assert isinstance(reply.reference.resolved, discord.Message)
    assert reply.reference.resolved.author.id == e2e.cast.alice.id


async def test_thread_message_arrives_in_the_thread(e2e):
    message = await _seen(e2e, await e2e.say(e2e.cast.support_thread, e2e.cast.bob, "in the thread"))
    assert isinstance(message.channel, discord.Thread)
    assert message.channel.parent_id == e2e.cast.support.id


async def test_edit_updates_the_bots_copy(e2e):
    post = await e2e.say(e2e.cast.general, e2e.cast.alice, "before")
    cached = await _seen(e2e, post)
    await e2e.edit(post, "after")
    await e2e.wait_until(lambda: cached.content == "after", 5, "the edit")
    assert cached.edited_at is not None


async def test_delete_reaches_the_bot(e2e):
    post = await e2e.say(e2e.cast.general, e2e.cast.alice, "oops")
    await _seen(e2e, post)
    await e2e.delete(post)
    await e2e.wait_until(lambda: _cached(e2e, post.id) is None, 5, "the delete")


async def test_attachment_only_message_has_no_text_and_one_file(e2e):
    post = await e2e.say(e2e.cast.general, e2e.cast.alice, attachments=["photo.png"])
    message = await _seen(e2e, post)
    assert message.content == ""
    assert [a.filename for a in message.attachments] == ["photo.png"]


async def test_message_from_another_bot_is_marked_as_bot(e2e):
    message = await _seen(e2e, await e2e.say(e2e.cast.general, e2e.cast.other_bot, "beep"))
    assert message.author.bot


async def test_fetching_a_deleted_message_is_not_found(e2e):
    post = await e2e.say(e2e.cast.general, e2e.cast.alice, "soon gone")
    await e2e.delete(post)
    channel = e2e.bot.get_channel(e2e.cast.general.id)
    with pytest.raises(discord.NotFound):
        await channel.fetch_message(post.id)


async def test_thread_started_later_reaches_the_bot(e2e):
    post = await e2e.say(e2e.cast.support, e2e.cast.carol, "anyone else struggling this week?")
    thread = await e2e.start_thread(post, "this week")
    await e2e.wait_until(lambda: e2e.bot.get_channel(thread.id), 5, "the new thread")
    message = await _seen(e2e, await e2e.say(thread, e2e.cast.bob, "me too"))
    assert message.channel.id == post.id and message.channel.parent_id == e2e.cast.support.id


async def test_member_dm_to_the_bot_reaches_it(e2e):
    message = await _seen(
        e2e, await e2e.say(e2e.dm_channel(e2e.cast.alice), e2e.cast.alice, "thanks for the note")
    )
    assert isinstance(message.channel, discord.DMChannel) and message.guild is None
