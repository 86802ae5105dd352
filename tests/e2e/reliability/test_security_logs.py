"""The e2e suite's log checker (tests/e2e/_log_leaks.py) is active in every test and catches a leak.

The checker itself runs at the teardown of every end-to-end test; these tests prove it sees the bot's real
log records, and that a record holding a member's text or the bot token is reported (the records logged on
purpose are dropped afterwards, so the suite stays green).
"""

from __future__ import annotations

import logging

import pytest

from tests.e2e import safety_support
from tests.e2e._features import add_support_channel, eventually, risk_row

pytestmark = pytest.mark.e2e

SECRET_POST = "my neighbour's dog keeps me awake every single night"
leaky = logging.getLogger("cogs.replies")


def _on_purpose(record: logging.LogRecord) -> bool:
    return getattr(record, "on_purpose", False)


async def test_log_checker_sees_the_bots_own_records(e2e, logs_hold_no_message_text_or_token):
    await add_support_channel(e2e)
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, SECRET_POST)
    await eventually(lambda: risk_row(e2e, post.id), what="the post's risk row")

    names = {record.name for record in logs_hold_no_message_text_or_token.records}
    # discord.py's client logs, and PeerCare's own DEBUG/INFO records reach the checker.
    assert any(name.startswith("discord.") for name in names)
    assert any(name.startswith(("bot.", "cogs.", "inference.")) for name in names)
    assert SECRET_POST in logs_hold_no_message_text_or_token.secrets()[1]
    assert e2e.runner.token in logs_hold_no_message_text_or_token.secrets()[0]
    assert logs_hold_no_message_text_or_token.leaks() == []


async def test_log_checker_catches_message_text_in_a_log_line(e2e, logs_hold_no_message_text_or_token):
    await add_support_channel(e2e)
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, SECRET_POST)
    await eventually(lambda: risk_row(e2e, post.id), what="the post's risk row")

    leaky.info("scored post: %s", post.content[:30], extra={"on_purpose": True})
    leaks = logs_hold_no_message_text_or_token.leaks()

    assert [leak.logger for leak in leaks] == ["cogs.replies"]
    logs_hold_no_message_text_or_token.forget(_on_purpose)


async def test_log_checker_catches_text_inside_a_traceback(e2e, logs_hold_no_message_text_or_token):
    await safety_support.go_live(e2e)
    post = await e2e.say(e2e.cast.support, e2e.cast.bob, SECRET_POST)
    try:
        raise ValueError(f"cannot parse {post.content!r}")
    except ValueError:
        leaky.warning("failed to handle a message", exc_info=True, extra={"on_purpose": True})

    assert len(logs_hold_no_message_text_or_token.leaks()) == 1
    logs_hold_no_message_text_or_token.forget(_on_purpose)


async def test_log_checker_catches_the_bot_token(e2e, logs_hold_no_message_text_or_token):
    leaky.debug("connecting with %s", e2e.runner.token, extra={"on_purpose": True})

    leaks = logs_hold_no_message_text_or_token.leaks()

    assert len(leaks) == 1 and leaks[0].secret == e2e.runner.token
    logs_hold_no_message_text_or_token.forget(_on_purpose)
