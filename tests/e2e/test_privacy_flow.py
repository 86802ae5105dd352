"""Privacy: a member sees and erases their data; text expires; leaving members and guilds take their data along."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.db.models import Escalation, EscalationConsent, GuildSettings, ScoredReply, utcnow
from bot.services import checkins, privacy
from tests.e2e.safety_support import go_live, post_crisis, wait_for_alert, wait_for_case

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e


async def _stored_about(e2e, user, guild_id=None) -> dict:
    async with e2e.database.session() as session:
        return await privacy.describe_member_data(session, user.id, guild_id)


async def _wait_for_reply_scored(e2e, count: int = 1) -> None:
    for _ in range(200):
        async with e2e.database.session() as session:
            if await session.scalar(select(func.count()).select_from(ScoredReply)) >= count:
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the reply was never scored")


async def _alice_has_data_everywhere(e2e):
    """Alice: a safety choice, check-ins, a crisis post with an alert, and a reply she wrote to Bob."""
    cast = e2e.cast
    await go_live(e2e, EscalationConsent.YES)
    await (
        await e2e.slash("peercare safety", {"choice": "yes"}, user=cast.alice, channel=cast.general)
    ).reply()
    command = await e2e.slash(
        "peercare checkin on",
        {"cadence": "weekly", "time": "20:00", "timezone": "UTC"},
        user=cast.alice,
        channel=cast.general,
    )
    await command.reply()
    await post_crisis(e2e)
    alert = await wait_for_alert(e2e)
    bobs_post = await e2e.say(cast.support, cast.bob, "Work has been really rough lately")
    await e2e.say(cast.support, cast.alice, "That sounds exhausting, what happened?", reply_to=bobs_post)
    await _wait_for_reply_scored(e2e)
    return alert


async def test_privacy_shows_a_member_what_is_stored(e2e):
    await _alice_has_data_everywhere(e2e)
    command = await e2e.slash("peercare privacy", user=e2e.cast.alice, channel=e2e.cast.general)
    answer = await command.reply()
    assert answer.ephemeral
    for table in ("member_consent", "escalations", "checkin_schedules", "scored_replies (replies you wrote)"):
        assert table in answer.content
    report = json.loads(answer.attachments[0].data)
    assert (
        report["scored_replies (replies you wrote)"][0]["reply_text"]
        == "That sounds exhausting, what happened?"
    )
    assert all(row["member_id"] == e2e.cast.alice.id for row in report["escalations"])


async def test_forget_me_deletes_everything(e2e):
    alert = await _alice_has_data_everywhere(e2e)
    async with e2e.database.session() as session:
        schedule_ids = [s.id for s in await checkins.active_schedules(session)]
    command = await e2e.slash("peercare forget-me", user=e2e.cast.alice, channel=e2e.cast.general)
    question = await command.reply()
    assert question.ephemeral and "cannot be undone" in question.content
    assert await _stored_about(e2e, e2e.cast.alice) != {}  # nothing happens before the confirmation
    await e2e.click(question, f"peercare:forget:confirm:{e2e.cast.alice.id}", user=e2e.cast.alice)
    await e2e.wait_until(lambda: "Done" in question.content, 5, "the deletion to be confirmed")
    assert await _stored_about(e2e, e2e.cast.alice) == {}
    assert all(e2e.bot.scheduler.get_job(checkins.job_id(i)) is None for i in schedule_ids)
    await e2e.wait_until(lambda: not alert.embeds, 5, "the alert to be redacted")
    assert "deleted" in alert.content and alert.custom_ids() == []
    assert await _stored_about(e2e, e2e.cast.bob) != {}  # Bob's post's risk stays on record


async def test_forget_me_cancel_deletes_nothing(e2e):
    await go_live(e2e)
    await (await e2e.slash("peercare safety", {"choice": "ask"}, user=e2e.cast.alice)).reply()
    question = await (await e2e.slash("peercare forget-me", user=e2e.cast.alice)).reply()
    await e2e.click(question, f"peercare:forget:cancel:{e2e.cast.alice.id}", user=e2e.cast.alice)
    await e2e.wait_until(lambda: "Nothing was deleted" in question.content, 5, "the cancel answer")
    assert "member_consent" in await _stored_about(e2e, e2e.cast.alice)


async def test_retention_job_deletes_expired_text(e2e):
    await _alice_has_data_everywhere(e2e)
    await wait_for_case(e2e)
    await e2e.bot.get_cog("Privacy").run_retention(utcnow() + timedelta(days=8))
    async with e2e.database.session() as session:
        reply = await session.scalar(select(ScoredReply))
        case = await session.scalar(select(Escalation))
    assert reply.reply_text is None and case.excerpt is None
    assert reply.er_level == 2 and case.tier == "high"  # scores and states stay


async def test_retention_job_keeps_text_within_retention(e2e):
    await _alice_has_data_everywhere(e2e)
    await e2e.bot.get_cog("Privacy").run_retention(utcnow() + timedelta(days=6))
    async with e2e.database.session() as session:
        assert (await session.scalar(select(ScoredReply))).reply_text is not None


async def test_member_leave_deletes_data(e2e):
    alert = await _alice_has_data_everywhere(e2e)
    await e2e.remove_member(e2e.cast.alice)
    await e2e.wait_until(lambda: not alert.embeds, 5, "the alert about the member to be redacted")
    assert await _stored_about(e2e, e2e.cast.alice, e2e.cast.guild.id) == {}


async def test_guild_data_is_deleted_after_the_grace_period(e2e):
    await _alice_has_data_everywhere(e2e)
    await e2e.delete_guild()
    for _ in range(100):
        async with e2e.database.session() as session:
            settings = await session.get(GuildSettings, e2e.cast.guild.id)
        if settings.left_at is not None:
            break
        await asyncio.sleep(0.05)
    assert settings.left_at is not None
    privacy_cog = e2e.bot.get_cog("Privacy")
    await privacy_cog.run_retention(utcnow() + timedelta(days=13))
    assert await _stored_about(e2e, e2e.cast.alice) != {}
    await privacy_cog.run_retention(utcnow() + timedelta(days=15))
    assert await _stored_about(e2e, e2e.cast.alice) == {}
    async with e2e.database.session() as session:
        assert await session.get(GuildSettings, e2e.cast.guild.id) is None
