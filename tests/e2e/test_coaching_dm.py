"""Coaching DMs: consent first, then a private note grounded in the reply's own words, sent once per reply."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.db.models import CoachingDelivery, MemberConsent
from bot.services.reply_scoring import CoachingStatus
from tests.e2e._features import (
    add_support_channel,
    coaching_on,
    count_deliveries,
    eventually,
    go_live,
    risk_row,
    settings_for,
    stored_reply,
    wait_for_stored_reply,
)

pytestmark = pytest.mark.e2e

SEEKER_TEXT = "My exams are next week and I can't sleep."
REPLY_TEXT = "That sounds exhausting. I'm here for you."


@pytest.fixture
def e2e_settings(e2e_inference_config):
    return settings_for(e2e_inference_config)


async def _reply_to_a_post(e2e, responder=None, text: str = REPLY_TEXT, seeker_text: str = SEEKER_TEXT):
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, seeker_text)
    return await e2e.say(e2e.cast.support, responder or e2e.cast.bob, text, reply_to=post)


async def test_coaching_dm_quotes_rationale(e2e):
    await go_live(e2e)
    await coaching_on(e2e, e2e.cast.bob)
    reply = await _reply_to_a_post(e2e)
    dm = await e2e.wait_for_dm(e2e.cast.bob, timeout=15.0)
    # The tiny models say ER strong, IP weak, EX none, with every reply word as rationale.
    assert "“That sounds exhausting.” shows warmth and care" in dm.content
    assert "— a strong Emotional Reaction." in dm.content
    assert "“I'm here for you.” shows you understood how they feel — an Interpretation." in dm.content
    assert "open question" in dm.content  # the next step for the weakest mechanism, Exploration
    assert reply.jump_url_path in dm.content


async def test_coaching_dm_pings_no_one(e2e):
    await go_live(e2e)
    await coaching_on(e2e, e2e.cast.bob)
    await _reply_to_a_post(e2e, text=f"@everyone <@{e2e.cast.alice.id}> that sounds so hard, I'm sorry")
    dm = await e2e.wait_for_dm(e2e.cast.bob, timeout=15.0)
    assert dm.allowed_mentions == {"parse": []}


async def test_coaching_dm_never_mentions_the_seekers_risk(e2e):
    await go_live(e2e)
    await coaching_on(e2e, e2e.cast.bob)
    reply = await _reply_to_a_post(e2e, seeker_text="I want to kill myself, I can't go on.")
    row = await wait_for_stored_reply(e2e, reply.id)
    assert row.parent_risk_tier == "high"  # the crisis-phrase layer raised it
    dm = await e2e.wait_for_dm(e2e.cast.bob, timeout=15.0)
    for word in ("risk", "suicid", "crisis", "kill", "alert", "moderator", "diagnos"):
        assert word not in dm.content.lower()


async def test_a_reply_whose_author_may_be_in_danger_gets_no_coaching_note(e2e):
    """Issue 13: a responder can be the one in danger. Their reply is risk-judged as their own message; when that
    puts it at high, a note praising its empathy would be tone-deaf, so coaching stands down for it (the case and
    the moderators take it from there)."""
    await go_live(e2e)
    await coaching_on(e2e, e2e.cast.bob)
    crisis = await _reply_to_a_post(e2e, text="honestly same. I want to kill myself, I can't go on.")
    await wait_for_stored_reply(
        e2e, crisis.id, where=lambda row: row.coaching_status == CoachingStatus.AUTHOR_AT_RISK.value
    )
    assert (await risk_row(e2e, crisis.id)).tier == "high"
    await e2e.settle()
    assert [dm for dm in e2e.dms_to(e2e.cast.bob) if "One thing to try" in (dm.content or "")] == []
    assert await count_deliveries(e2e) == 0


async def test_first_reply_brings_an_invitation_not_a_note(e2e):
    await go_live(e2e)
    await _reply_to_a_post(e2e)
    invitation = await e2e.wait_for_dm(e2e.cast.bob, timeout=15.0)
    guild_id = e2e.cast.guild.id
    assert invitation.custom_ids() == [
        f"peercare:coaching:yes:{guild_id}",
        f"peercare:coaching:no:{guild_id}",
    ]
    assert "Peer Support Test Server" in invitation.content and "/peercare coaching off" in invitation.content
    assert "One thing to try" not in invitation.content
    await _reply_to_a_post(e2e)
    await e2e.settle()
    assert len(e2e.dms_to(e2e.cast.bob)) == 1  # invited once, no note before an answer


async def test_accepting_the_invitation_sends_the_waiting_note(e2e):
    await go_live(e2e)
    reply = await _reply_to_a_post(e2e)
    invitation = await e2e.wait_for_dm(e2e.cast.bob, timeout=15.0)
    click = await e2e.click(invitation, f"peercare:coaching:yes:{e2e.cast.guild.id}", user=e2e.cast.bob)
    await click.response()
    note = await e2e.wait_for_dm(e2e.cast.bob, timeout=15.0)
    assert reply.jump_url_path in note.content and "did well" in note.content
    assert invitation.components == [] and "Thanks!" in invitation.content


async def test_declining_the_invitation_means_no_notes(e2e):
    await go_live(e2e)
    await _reply_to_a_post(e2e)
    invitation = await e2e.wait_for_dm(e2e.cast.bob, timeout=15.0)
    click = await e2e.click(invitation, f"peercare:coaching:no:{e2e.cast.guild.id}", user=e2e.cast.bob)
    await click.response()
    later = await _reply_to_a_post(e2e)
    await wait_for_stored_reply(e2e, later.id, where=lambda r: r.coaching_status != "pending")
    await e2e.settle()
    assert len(e2e.dms_to(e2e.cast.bob)) == 1
    assert (await stored_reply(e2e, later.id)).coaching_status == CoachingStatus.NOT_WANTED.value


async def test_invitation_buttons_survive_restart(e2e):
    await go_live(e2e)
    await _reply_to_a_post(e2e)
    invitation = await e2e.wait_for_dm(e2e.cast.bob, timeout=15.0)
    await e2e.restart_bot()
    click = await e2e.click(invitation, f"peercare:coaching:yes:{e2e.cast.guild.id}", user=e2e.cast.bob)
    await click.response()
    note = await e2e.wait_for_dm(e2e.cast.bob, timeout=15.0)
    assert "did well" in note.content


async def test_opt_out_guild_sends_a_first_note_that_introduces_peercare(e2e):
    await go_live(e2e, coaching_default="opt_out")
    await _reply_to_a_post(e2e)
    first = await e2e.wait_for_dm(e2e.cast.bob, timeout=15.0)
    assert first.content.startswith("Hi! The moderators of **Peer Support Test Server** use PeerCare")
    assert "did well" in first.content
    assert f"peercare:coaching:no:{e2e.cast.guild.id}" in first.custom_ids()


async def test_shadow_mode_scores_but_sends_no_dm(e2e):
    await add_support_channel(e2e)  # a new guild starts in shadow mode
    await coaching_on(e2e, e2e.cast.bob)
    reply = await _reply_to_a_post(e2e)
    row = await wait_for_stored_reply(e2e, reply.id, where=lambda r: r.coaching_status != "pending")
    await e2e.settle()
    assert row.coaching_status == CoachingStatus.SHADOW.value
    assert e2e.dms_to(e2e.cast.bob) == []


async def test_coaching_off_stops_notes(e2e):
    await go_live(e2e)
    await coaching_on(e2e, e2e.cast.bob)
    command = await e2e.slash("peercare coaching off", user=e2e.cast.bob, channel=e2e.cast.support)
    assert "off" in (await command.reply()).content
    reply = await _reply_to_a_post(e2e)
    await wait_for_stored_reply(e2e, reply.id, where=lambda r: r.coaching_status != "pending")
    await e2e.settle()
    assert e2e.dms_to(e2e.cast.bob) == []


async def test_dms_closed_stops_trying(e2e):
    await go_live(e2e)
    await coaching_on(e2e, e2e.cast.bob)
    e2e.faults.block_dms(e2e.cast.bob.id)
    await _reply_to_a_post(e2e)

    async def marked_closed():
        async with e2e.database.session() as session:
            member = await session.get(MemberConsent, (e2e.cast.guild.id, e2e.cast.bob.id))
            return member is not None and member.dms_closed_at is not None

    await eventually(marked_closed, what="DMs closed to be recorded")
    attempts = await count_deliveries(e2e)
    later = await _reply_to_a_post(e2e)
    row = await wait_for_stored_reply(e2e, later.id, where=lambda r: r.coaching_status != "pending")
    await e2e.settle()
    assert row.coaching_status == CoachingStatus.DMS_CLOSED.value
    assert await count_deliveries(e2e) == attempts  # no second try
    async with e2e.database.session() as session:
        statuses = list(await session.scalars(select(CoachingDelivery.status)))
    assert statuses == ["dms_closed"]
    assert not e2e.logged_errors()
