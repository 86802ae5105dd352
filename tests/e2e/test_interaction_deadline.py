"""Discord's 3 s deadline for an interaction's first answer: slow commands and buttons are deferred in time.

The loopback server refuses a first callback that comes later than ``server.interaction_deadline_s`` after the
interaction's creation (404, code 10062), as Discord does. Tests shorten that deadline and the bot's
auto-defer delay so a held service call outlasts them without making the suite slow; nothing here times the
bot's speed.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest
from discord.webhook.async_ import AsyncWebhookAdapter
from sqlalchemy import select

from bot.db.models import CheckinSchedule, EscalationConsent, EscalationState, MemberConsent, utcnow
from bot.services import checkins, consent, escalation_actions
from tests.discord_server.interactions import CallbackType
from tests.discord_server.world import MessageFlag
from tests.e2e.safety_support import go_live, post_crisis, wait_for_alert, wait_for_case

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e

CALLBACK_ROUTE = "/interactions/{interaction_id}/{token}/callback"
# Shortened for the tests: the bot defers at DEFER_AFTER_S, the server refuses first answers after DEADLINE_S.
DEFER_AFTER_S = 0.3
DEADLINE_S = 1.5


@pytest.fixture
def e2e_extra_extensions() -> list[str]:
    return ["tests.e2e.deadline_probe_cog"]  # slash commands declared public / opening a form


def _shorten_deadlines(e2e, *, defer_after: float | None = DEFER_AFTER_S) -> None:
    e2e.server.interaction_deadline_s = DEADLINE_S
    e2e.bot.auto_defer.after_seconds = defer_after


async def _past_the_deadline(e2e, interaction) -> None:
    """Wait until Discord would no longer take a first answer to ``interaction``."""
    await asyncio.sleep(max(DEADLINE_S - e2e.server.interaction_age(interaction), 0.0) + 0.1)
    assert e2e.server.interaction_age(interaction) > DEADLINE_S


def _callback_requests(e2e, interaction) -> list:
    return [
        r
        for r in e2e.requests.find(method="POST", route=CALLBACK_ROUTE)
        if r.params["token"] == interaction.token
    ]


async def _checkin_dm(e2e):
    """Alice's check-in DM (the scheduler's job run by hand), as in test_checkins_flow."""
    await go_live(e2e, EscalationConsent.YES)
    command = await e2e.slash(
        "peercare checkin on",
        {"cadence": "daily", "time": "09:30", "timezone": "Europe/Berlin"},
        user=e2e.cast.alice,
    )
    await command.reply()
    async with e2e.database.session() as session:
        schedule = await session.scalar(select(CheckinSchedule))
    job = e2e.bot.scheduler.get_job(checkins.job_id(schedule.id))
    assert await job.func(*job.args, now=utcnow() + timedelta(minutes=1)) is True
    dm = await e2e.wait_for_dm(e2e.cast.alice)
    return dm, int(dm.custom_ids()[0].rsplit(":", 1)[1])


async def test_fast_command_is_answered_directly_without_a_defer(e2e):
    command = await e2e.slash("peercare channel list", user=e2e.cast.moderator)
    first = await command.response()
    assert first["type"] == CallbackType.CHANNEL_MESSAGE
    answer = await command.reply()
    assert answer.ephemeral and "No support channels yet" in answer.content
    await e2e.settle()
    assert len(command.callbacks) == 1


async def test_slow_command_is_deferred_privately_and_still_answered_after_the_deadline(e2e, hold):
    _shorten_deadlines(e2e)
    held = hold(consent, "set_escalation")
    command = await e2e.slash("peercare safety", {"choice": "yes"}, user=e2e.cast.alice)
    await held.wait_reached()
    deferred = await command.response()
    assert deferred["type"] == CallbackType.DEFERRED_CHANNEL_MESSAGE
    assert deferred["data"]["flags"] & MessageFlag.EPHEMERAL  # private "thinking…", as the answer will be
    await _past_the_deadline(e2e, command)
    held.release()
    answer = await command.reply()
    assert answer.ephemeral and answer.content.startswith("Saved. **Yes**")
    assert [r.status < 300 for r in _callback_requests(e2e, command)] == [True]  # one callback, never refused
    async with e2e.database.session() as session:
        stored = await session.scalar(select(MemberConsent).where(MemberConsent.user_id == e2e.cast.alice.id))
    assert stored.escalation is EscalationConsent.YES


async def test_first_answer_after_the_deadline_is_refused_like_discord(e2e, hold):
    """Without the auto-defer the late answer is lost: the server enforces the rule the bot works around.

    The bot logs that as a warning, not an error: the command's work is done, and no answer can reach the
    member any more (an error message would be refused the same way).
    """
    _shorten_deadlines(e2e, defer_after=None)
    held = hold(consent, "set_escalation")
    command = await e2e.slash("peercare safety", {"choice": "no"}, user=e2e.cast.alice)
    await held.wait_reached()
    await _past_the_deadline(e2e, command)
    held.release()
    refused = await e2e.wait_for_request(
        method="POST", route=CALLBACK_ROUTE, where=lambda r: r.params["token"] == command.token
    )
    assert (refused.status, refused.response["code"]) == (404, 10062)
    await e2e.settle()
    assert command.callbacks == [] and command.messages == []


async def test_slow_command_declared_public_is_deferred_publicly(e2e, hold):
    _shorten_deadlines(e2e)
    held = hold(e2e.bot.get_cog("DeadlineProbe"), "slow_step")
    command = await e2e.slash("peercare deadline-public", user=e2e.cast.alice)
    await held.wait_reached()
    deferred = await command.response()
    assert deferred["type"] == CallbackType.DEFERRED_CHANNEL_MESSAGE
    assert not deferred["data"].get("flags", 0) & MessageFlag.EPHEMERAL
    await _past_the_deadline(e2e, command)
    held.release()
    answer = await command.reply()
    assert not answer.ephemeral and answer.content == "an answer for everyone"


async def test_slow_command_declared_to_open_a_form_is_not_deferred_before_it(e2e, hold):
    _shorten_deadlines(e2e)
    held = hold(e2e.bot.get_cog("DeadlineProbe"), "slow_step")
    command = await e2e.slash("peercare deadline-form", user=e2e.cast.alice)
    await held.wait_reached()
    await asyncio.sleep(max(DEFER_AFTER_S - e2e.server.interaction_age(command), 0.0) + 0.2)
    assert command.callbacks == []  # past the auto-defer delay: only the form may answer
    held.release()
    assert (await command.response())["type"] == CallbackType.MODAL
    submitted = await e2e.submit_modal(command, {"deadline:note": "hi"})
    assert (await submitted.reply()).content == "form received"


async def test_slow_alert_button_is_deferred_and_the_alert_still_updated(e2e, hold):
    await go_live(e2e, EscalationConsent.YES)
    await post_crisis(e2e)
    alert = await wait_for_alert(e2e)
    case = await wait_for_case(e2e, EscalationState.ALERTED)
    _shorten_deadlines(e2e)
    held = hold(escalation_actions, "apply_moderator_action")
    click = await e2e.click(alert, f"peercare:alert:acknowledge:{case.id}", user=e2e.cast.moderator)
    await held.wait_reached()
    # Acknowledged without a new message: the alert is not replaced by "thinking…".
    assert (await click.response())["type"] == CallbackType.DEFERRED_UPDATE_MESSAGE
    await _past_the_deadline(e2e, click)
    held.release()
    await wait_for_case(e2e, EscalationState.ACKNOWLEDGED)

    def status() -> str:
        return next(f["value"] for f in alert.embeds[0]["fields"] if f["name"] == "Status")

    await e2e.wait_until(lambda: status().startswith("Acknowledged"), 10, "the alert's status to change")
    assert status() == f"Acknowledged by {e2e.cast.moderator.mention}"
    assert len(click.callbacks) == 1 and click.followups == []


async def test_button_that_opens_a_form_is_not_deferred_before_it(e2e, hold):
    from cogs.checkins import CheckinNoteButton

    dm, checkin_id = await _checkin_dm(e2e)
    _shorten_deadlines(e2e)
    held = hold(CheckinNoteButton, "from_custom_id")
    opened = await e2e.click(dm, f"peercare:checkin:note:{checkin_id}", user=e2e.cast.alice)
    await held.wait_reached()
    # Past the auto-defer delay, still inside Discord's deadline: only the form may answer.
    await asyncio.sleep(max(DEFER_AFTER_S - e2e.server.interaction_age(opened), 0.0) + 0.2)
    assert opened.callbacks == []
    held.release()
    assert (await opened.response())["type"] == CallbackType.MODAL
    submitted = await e2e.submit_modal(opened, {"note": ""})
    assert "nothing was saved" in (await submitted.reply()).content


async def test_handler_answering_while_the_defer_is_in_flight_sends_one_first_answer(e2e, hold):
    """The timer and the handler race for the first answer: exactly one callback, and the answer arrives."""
    e2e.bot.auto_defer.after_seconds = 0.0  # the timer fires at once, during the command's database work
    in_flight = hold(AsyncWebhookAdapter, "create_interaction_response")
    command = await e2e.slash("peercare safety", {"choice": "ask"}, user=e2e.cast.alice)
    await in_flight.wait_reached()

    async def stored() -> bool:
        async with e2e.database.session() as session:
            row = await session.scalar(
                select(MemberConsent).where(MemberConsent.user_id == e2e.cast.alice.id)
            )
        return row is not None

    await e2e.eventually(stored, what="the choice to be saved")
    await asyncio.sleep(0.2)  # the handler goes on to answer while the first callback is still in flight
    in_flight.release()
    answer = await command.reply()
    assert answer.ephemeral and answer.content.startswith("Saved. **Ask me first**")
    await e2e.settle()
    assert [r.status < 300 for r in _callback_requests(e2e, command)] == [True]  # no 40060: only one was sent
    assert len(command.callbacks) == 1
