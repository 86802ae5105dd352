"""A member sees and deletes only their own data; alerts reach only the configured alert channel."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.db.models import EscalationConsent, ScoredReply
from bot.services import privacy
from tests.discord_server import faults
from tests.e2e import safety_support
from tests.e2e._features import eventually

pytestmark = pytest.mark.e2e

BOB_POST = "Work has been really rough lately and I can't focus"
ALICE_POST = "My exams are next week and I'm so anxious about them"
# Columns that name the member a row is about.
SUBJECT_COLUMNS = ("user_id", "author_id", "member_id", "responder_id")
# Erasing Alice sets seeker_id to 0 in replies others wrote to her posts (and so touches updated_at).
ANONYMISED = ("seeker_id", "updated_at")


async def _scored_replies(e2e) -> int:
    async with e2e.database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(ScoredReply)) or 0)


async def _stored_about(e2e, user) -> dict[str, list[dict[str, Any]]]:
    async with e2e.database.session() as session:
        return await privacy.describe_member_data(session, user.id)


async def _members_with_data(e2e) -> dict[str, Any]:
    """Alice, Bob and Carol each post, reply to one another, choose a safety setting and turn check-ins on."""
    cast = e2e.cast
    await safety_support.go_live(e2e, EscalationConsent.YES)
    for member, choice in ((cast.alice, "yes"), (cast.bob, "ask"), (cast.carol, "no")):
        await (await e2e.slash("peercare safety", {"choice": choice}, user=member)).reply()
        await (
            await e2e.slash(
                "peercare checkin on", {"cadence": "daily", "time": "20:00", "timezone": "UTC"}, user=member
            )
        ).reply()
    bobs_post = await e2e.say(cast.support, cast.bob, BOB_POST)
    alices_post = await e2e.say(cast.support, cast.alice, ALICE_POST)
    alices_reply = await e2e.say(
        cast.support, cast.alice, "That sounds exhausting, I'm sorry", reply_to=bobs_post
    )
    await e2e.say(cast.support, cast.bob, "Exams are scary, you've got this", reply_to=alices_post)
    await e2e.say(cast.support, cast.bob, "What are you studying for?", reply_to=alices_post)
    await e2e.say(cast.support, cast.carol, "Sending you strength, Bob", reply_to=bobs_post)

    async def four_scored() -> bool:
        return await _scored_replies(e2e) >= 4

    await eventually(four_scored, what="four scored replies")
    await e2e.settle()  # coaching invitations and alerts done: the data stops changing
    return {"bobs_post": bobs_post, "alices_post": alices_post, "alices_reply": alices_reply}


def _without(found: dict[str, list[dict[str, Any]]], reply_id: int) -> dict[str, list[dict[str, Any]]]:
    """A member's data less Alice's reply, and less what anonymising Alice in their rows changes by design."""
    return {
        table: [
            {column: value for column, value in row.items() if column not in ANONYMISED}
            for row in rows
            if row.get("reply_message_id") != reply_id
        ]
        for table, rows in found.items()
    }


async def test_privacy_export_holds_only_the_members_own_data(e2e):
    posts = await _members_with_data(e2e)

    command = await e2e.slash("peercare privacy", user=e2e.cast.alice)
    answer = await command.reply()
    export = json.loads(answer.attachments[0].data)

    assert answer.ephemeral
    for table, rows in export.items():
        for row in rows:
            for column in SUBJECT_COLUMNS:
                if column in row:
                    assert row[column] == e2e.cast.alice.id, (table, column)
    assert [
        row["your_message_id"]
        for row in export["scored_replies (replies to your posts: your post's risk score)"]
    ] == [posts["alices_post"].id] * 2
    # Alice's reply to Bob is hers, but the risk score of Bob's post is Bob's: not in Alice's export.
    for row in export["scored_replies (replies you wrote)"]:
        assert "parent_risk" not in row and "parent_risk_tier" not in row
    assert BOB_POST not in json.dumps(export)


async def test_forget_me_leaves_other_members_data_untouched(e2e):
    posts = await _members_with_data(e2e)
    others = {m.name: await _stored_about(e2e, m) for m in (e2e.cast.bob, e2e.cast.carol)}

    question = await (await e2e.slash("peercare forget-me", user=e2e.cast.alice)).reply()
    await e2e.click(question, f"peercare:forget:confirm:{e2e.cast.alice.id}", user=e2e.cast.alice)
    await e2e.wait_until(lambda: "Done" in question.content, 5, "the deletion to be confirmed")

    assert await _stored_about(e2e, e2e.cast.alice) == {}
    alices_reply = posts["alices_reply"].id
    for member in (e2e.cast.bob, e2e.cast.carol):
        # Only Alice's own reply (listed under "replies to your posts" for Bob) went away with her.
        after = await _stored_about(e2e, member)
        assert _without(after, alices_reply) == _without(others[member.name], alices_reply)
    assert e2e.bot.scheduler.get_jobs()  # Bob's and Carol's check-ins are still scheduled


async def test_a_member_cannot_confirm_another_members_forget_me(e2e):
    await _members_with_data(e2e)
    before = await _stored_about(e2e, e2e.cast.alice)
    question = await (await e2e.slash("peercare forget-me", user=e2e.cast.alice)).reply()

    click = await e2e.click(question, f"peercare:forget:confirm:{e2e.cast.alice.id}", user=e2e.cast.bob)
    answer = await click.reply()

    assert answer.ephemeral and answer.content == "Only the member who asked can confirm this."
    assert await _stored_about(e2e, e2e.cast.alice) == before


async def test_me_shows_only_the_members_own_replies(e2e):
    await _members_with_data(e2e)

    alice = await (await e2e.slash("peercare me", user=e2e.cast.alice)).reply(timeout=15.0)
    bob = await (await e2e.slash("peercare me", user=e2e.cast.bob)).reply(timeout=15.0)

    assert alice.ephemeral and alice.content.startswith("**1 replies**")
    assert bob.ephemeral and bob.content.startswith("**2 replies**")


async def test_alerts_reach_only_the_configured_alert_channel(e2e):
    cast = e2e.cast
    await safety_support.go_live(e2e, EscalationConsent.YES)
    await safety_support.post_crisis(e2e, cast.alice)
    await safety_support.post_crisis(e2e, cast.bob)
    await e2e.say(cast.general, cast.carol, safety_support.CRISIS_POST)  # not a support channel: not read

    await e2e.wait_until(lambda: len(safety_support.alerts(e2e)) == 2, 15, "two alerts")
    await e2e.settle()

    dm_channels = {e2e.dm_channel(user).id for user in (cast.alice, cast.bob, cast.carol, cast.moderator)}
    written = [
        r
        for r in e2e.requests.all
        if r.route.startswith("/channels/{channel_id}/messages") and r.method in ("POST", "PATCH")
    ]
    guild_channels = {int(r.path.split("/")[2]) for r in written} - dm_channels
    assert guild_channels == {cast.mod_alerts.id}
    assert all(m.embeds for m in safety_support.alerts(e2e))
    assert e2e.sent_to(cast.support) == e2e.sent_to(cast.general) == []


async def test_forget_me_during_a_coaching_dm_in_flight_leaves_nothing_behind(e2e):
    """The coaching DM is held back (a 429) while Alice erases her data; its bookkeeping must not bring it back."""
    cast = e2e.cast
    await safety_support.go_live(e2e, EscalationConsent.YES)
    await (await e2e.slash("peercare coaching on", user=cast.alice, channel=cast.support)).reply()
    dm = e2e.dm_channel(cast.alice)
    e2e.faults.next_request(
        faults.rate_limited(retry_after=1.5), method="POST", path=f"/channels/{dm.id}/messages"
    )
    post = await e2e.say(cast.support, cast.bob, BOB_POST)
    await e2e.say(cast.support, cast.alice, "That sounds exhausting, I'm sorry", reply_to=post)
    await e2e.wait_for_request(method="POST", path=f"/channels/{dm.id}/messages")

    question = await (await e2e.slash("peercare forget-me", user=cast.alice)).reply()
    await e2e.click(question, f"peercare:forget:confirm:{cast.alice.id}", user=cast.alice)
    await e2e.wait_until(lambda: "Done" in question.content, 5, "the deletion to be confirmed")
    await e2e.wait_for_dm(cast.alice)  # the held-back note finally goes out
    await e2e.settle()

    assert await _stored_about(e2e, cast.alice) == {}


async def test_forget_me_during_an_alert_in_flight_leaves_no_excerpt_in_the_alert_channel(e2e):
    """The alert is held back (a 429) while Alice erases her data: once it is posted, it must not show her words."""
    cast = e2e.cast
    await safety_support.go_live(e2e, EscalationConsent.YES)
    e2e.faults.next_request(
        faults.rate_limited(retry_after=1.5), method="POST", path=f"/channels/{cast.mod_alerts.id}/messages"
    )
    await safety_support.post_crisis(e2e, cast.alice)
    await e2e.wait_for_request(method="POST", path=f"/channels/{cast.mod_alerts.id}/messages")

    question = await (await e2e.slash("peercare forget-me", user=cast.alice)).reply()
    await e2e.click(question, f"peercare:forget:confirm:{cast.alice.id}", user=cast.alice)
    await e2e.wait_until(lambda: "Done" in question.content, 5, "the deletion to be confirmed")
    alert_posts = f"/channels/{cast.mod_alerts.id}/messages"
    await e2e.wait_until(
        lambda: len(e2e.requests.find(method="POST", path=alert_posts)) >= 2, 10, "the retry"
    )
    await e2e.settle(quiet=0.5)

    assert await _stored_about(e2e, cast.alice) == {}
    for message in e2e.sent_to(cast.mod_alerts):
        assert safety_support.CRISIS_POST not in message.text
