"""Edits re-score a reply but never earn a second note; deletes remove what was stored."""

from __future__ import annotations

import pytest

from bot.db.models import RiskAssessment, ScoredReply
from bot.services.reply_scoring import content_hash
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


@pytest.fixture
def e2e_settings(e2e_inference_config):
    return settings_for(e2e_inference_config)


async def _coached_reply(e2e):
    await go_live(e2e)
    await coaching_on(e2e, e2e.cast.bob)
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)
    reply = await e2e.say(e2e.cast.support, e2e.cast.bob, "Ugh, exams.", reply_to=post)
    await e2e.wait_for_dm(e2e.cast.bob, timeout=15.0)
    await wait_for_stored_reply(e2e, reply.id, where=lambda r: r.coaching_status == "sent")
    return post, reply


async def test_edit_does_not_send_second_dm(e2e):
    _, reply = await _coached_reply(e2e)
    new_text = "That sounds exhausting. What has the last week been like for you?"
    await e2e.edit(reply, new_text)
    row = await wait_for_stored_reply(e2e, reply.id, where=lambda r: r.content_hash == content_hash(new_text))
    await e2e.settle()
    assert row.reply_text == new_text
    assert row.coaching_status == "sent"
    assert len(e2e.dms_to(e2e.cast.bob)) == 1


async def test_edit_that_changes_only_spacing_is_not_rescored(e2e):
    _, reply = await _coached_reply(e2e)
    before = await stored_reply(e2e, reply.id)
    await e2e.edit(reply, "  ugh,   EXAMS. ")
    await e2e.settle()
    after = await stored_reply(e2e, reply.id)
    assert after.updated_at == before.updated_at
    assert after.reply_text == "Ugh, exams."


async def test_delete_removes_stored_reply(e2e):
    _, reply = await _coached_reply(e2e)
    await e2e.delete(reply)

    async def gone():
        return await stored_reply(e2e, reply.id) is None

    await eventually(gone, what="the deleted reply's row to go")
    assert await count_rows(e2e, ScoredReply) == 0


async def test_deleting_the_seeker_post_removes_its_risk_score(e2e):
    post, reply = await _coached_reply(e2e)
    await eventually(lambda: risk_row(e2e, post.id), what="the post's risk score")
    await e2e.delete(post)

    async def gone():
        return await count_rows(e2e, RiskAssessment, RiskAssessment.message_id == post.id) == 0

    await eventually(gone, what="the post's risk row to go")
    row = await stored_reply(e2e, reply.id)
    assert row.parent_risk is None and row.parent_risk_tier is None
