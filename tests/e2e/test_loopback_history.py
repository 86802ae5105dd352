"""The loopback server's message history (GET /channels/{id}/messages) pages the way Discord does.

Discord answers newest first, also with ``after`` (then the page is the messages right after that id);
discord.py's ``history(oldest_first=True)`` relies on it to page forward.
"""

from __future__ import annotations

import discord
import pytest

pytestmark = pytest.mark.e2e


async def _post(e2e, count: int) -> list[int]:  # type: ignore[no-untyped-def]
    return [(await e2e.say(e2e.cast.general, e2e.cast.alice, f"message {i}")).id for i in range(count)]


async def test_a_page_after_an_id_is_the_messages_right_after_it_newest_first(e2e):
    posted = await _post(e2e, 6)
    page = await e2e.bot.http.logs_from(e2e.cast.general.id, 3, after=posted[1])
    assert [int(m["id"]) for m in page] == [posted[4], posted[3], posted[2]]


async def test_a_page_without_after_is_the_newest_messages_newest_first(e2e):
    posted = await _post(e2e, 6)
    page = await e2e.bot.http.logs_from(e2e.cast.general.id, 3, before=posted[5])
    assert [int(m["id"]) for m in page] == [posted[4], posted[3], posted[2]]
    newest = await e2e.bot.http.logs_from(e2e.cast.general.id, 2)
    assert [int(m["id"]) for m in newest] == [posted[5], posted[4]]


async def test_history_after_an_id_pages_forward_oldest_first_across_pages(e2e):
    posted = await _post(e2e, 125)
    channel = e2e.bot.get_channel(e2e.cast.general.id)
    after = discord.Object(id=posted[9])
    read = [m.id async for m in channel.history(after=after, oldest_first=True, limit=None)]
    assert read == posted[10:]
    newest = [m.id async for m in channel.history(after=after, oldest_first=False, limit=3)]
    assert newest == posted[:-4:-1]
