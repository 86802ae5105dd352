"""A reply deleted while it is being scored or re-scored leaves nothing stored, no error and no note."""

from __future__ import annotations

import pytest

from bot.db.models import ScoredReply
from bot.services import seeker_risk
from tests.e2e._features import (
    coaching_on,
    count_rows,
    eventually,
    go_live,
    risk_row,
    settings_for,
    stored_reply,
    wait_for_stored_reply,
)

pytestmark = pytest.mark.e2e

SEEKER_TEXT = "My exams are next week and I can't sleep."
REPLY_TEXT = "Ugh, exams."
EDITED_TEXT = "That sounds exhausting. What has the last week been like for you?"


@pytest.fixture
def e2e_settings(e2e_inference_config):
    return settings_for(e2e_inference_config)


def _pipeline(e2e):  # type: ignore[no-untyped-def]
    return e2e.bot.get_cog("Replies").pipeline


async def _delete_while_held(e2e, reply) -> None:  # type: ignore[no-untyped-def]
    """Delete the reply and wait until the bot has taken the delete in (forgotten it, or noted it)."""
    await e2e.delete(reply)
    pipeline = _pipeline(e2e)

    async def delete_seen() -> bool:
        noted = getattr(pipeline, "is_deleted", None)
        if noted is not None:
            return noted(reply.id)
        return await stored_reply(e2e, reply.id) is None

    await eventually(delete_seen, what="the bot to take the delete in")


async def _coached_reply(e2e):  # type: ignore[no-untyped-def]
    await go_live(e2e)
    await coaching_on(e2e, e2e.cast.bob)
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)
    reply = await e2e.say(e2e.cast.support, e2e.cast.bob, REPLY_TEXT, reply_to=post)
    await e2e.wait_for_dm(e2e.cast.bob, timeout=15.0)
    await wait_for_stored_reply(e2e, reply.id, where=lambda r: r.coaching_status == "sent")
    return reply


async def _nothing_stored_for(e2e, reply) -> None:  # type: ignore[no-untyped-def]
    async def gone() -> bool:
        return await stored_reply(e2e, reply.id) is None

    await eventually(gone, what="the deleted reply's row to go")
    await e2e.settle()
    assert await stored_reply(e2e, reply.id) is None
    assert await count_rows(e2e, ScoredReply) == 0


async def test_reply_deleted_while_its_edit_is_stored_leaves_nothing_and_no_error(e2e, hold):
    reply = await _coached_reply(e2e)
    # The reported race: the delete lands between reading the stored reply and writing the edit's result.
    held = hold(seeker_risk, "record_seeker_risk")
    await e2e.edit(reply, EDITED_TEXT)
    await held.wait_reached()
    await _delete_while_held(e2e, reply)
    held.release()
    await _nothing_stored_for(e2e, reply)
    assert len(e2e.dms_to(e2e.cast.bob)) == 1
    assert e2e.logged_errors() == []


async def test_reply_deleted_while_its_edit_is_scored_is_not_stored_again(e2e, hold):
    reply = await _coached_reply(e2e)
    held = hold(_pipeline(e2e).inference, "score_reply")
    await e2e.edit(reply, EDITED_TEXT)
    await held.wait_reached()
    await _delete_while_held(e2e, reply)
    held.release()
    await _nothing_stored_for(e2e, reply)
    assert len(e2e.dms_to(e2e.cast.bob)) == 1
    assert e2e.logged_errors() == []


async def test_reply_deleted_during_its_first_scoring_is_not_stored_or_coached(e2e, hold):
    await go_live(e2e)
    await coaching_on(e2e, e2e.cast.bob)
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)
    await eventually(lambda: risk_row(e2e, post.id), what="the post's risk score")
    held = hold(_pipeline(e2e).inference, "score_reply")
    reply = await e2e.say(e2e.cast.support, e2e.cast.bob, REPLY_TEXT, reply_to=post)
    await held.wait_reached()
    await _delete_while_held(e2e, reply)
    held.release()
    await _nothing_stored_for(e2e, reply)
    assert e2e.dms_to(e2e.cast.bob) == []
    assert e2e.logged_errors() == []
