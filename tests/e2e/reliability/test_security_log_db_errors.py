"""A database error that is not passing (disk full, I/O error, a data error) is logged without member text.

SQLAlchemy puts a failed statement's parameters into its exception message (``[parameters: (... 'reply
text' ...)]``), and the bot logs such an error with its traceback. A SQLite trigger makes one write fail for
good, the way a full disk would; the e2e log checker (``tests/e2e/_log_leaks.py``) then looks for the text.
"""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text

from tests.e2e._features import coaching_on
from tests.e2e.safety_support import go_live

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e

SEEKER_TEXT = "my landlord wants me out by friday and I have nowhere to go"
REPLY_TEXT = "That sounds frightening, wanting a safe place and not finding one."
NOTE_TEXT = "the pharmacy closed before I could pick up my prescription today"


async def _fail_writes_to(e2e, table: str, verb: str) -> None:  # type: ignore[no-untyped-def]
    """Every ``verb`` (INSERT/UPDATE) on ``table`` fails with a non-transient error from now on."""
    async with e2e.database.session() as session:
        await session.execute(
            text(
                f"CREATE TRIGGER fail_{table} BEFORE {verb} ON {table} "
                "BEGIN SELECT RAISE(ABORT, 'simulated disk I/O failure'); END"
            )
        )


async def test_database_error_log_has_no_message_text(e2e, logs_hold_no_message_text_or_token):
    await go_live(e2e)
    await coaching_on(e2e, e2e.cast.bob)
    await _fail_writes_to(e2e, "scored_replies", "INSERT")
    e2e.expect_errors()  # the failed reply is logged as an ERROR, on purpose
    post = await e2e.say(e2e.cast.support, e2e.cast.alice, SEEKER_TEXT)
    reply = await e2e.say(e2e.cast.support, e2e.cast.bob, REPLY_TEXT, reply_to=post)

    await e2e.wait_until(
        lambda: [r for r in e2e.logged_errors() if f"message {reply.id}" in r.getMessage()] or None,
        30,
        "the reply's failed store to be logged",
    )
    assert logs_hold_no_message_text_or_token.leaks() == []


async def test_failing_checkin_note_modal_log_has_no_note_text(e2e, logs_hold_no_message_text_or_token):
    await go_live(e2e)
    command = await e2e.slash(
        "peercare checkin on",
        {"cadence": "daily", "time": "09:30", "timezone": "UTC"},
        user=e2e.cast.alice,
        channel=e2e.cast.general,
    )
    await command.reply()
    (job,) = [job for job in e2e.bot.scheduler.get_jobs() if job.id.startswith("checkin")]
    assert await job.func(*job.args) is True
    dm = await e2e.wait_for_dm(e2e.cast.alice)
    checkin_id = int(dm.custom_ids()[0].rsplit(":", 1)[1])
    await _fail_writes_to(e2e, "checkins", "UPDATE")
    e2e.expect_errors()  # the failed form is logged as an ERROR, on purpose

    opened = await e2e.click(dm, f"peercare:checkin:note:{checkin_id}", user=e2e.cast.alice)
    await opened.response()
    await e2e.submit_modal(opened, {"note": NOTE_TEXT})
    await e2e.wait_until(
        lambda: [r for r in e2e.logged_errors() if r.exc_info] or None, 30, "the form's failure to be logged"
    )
    assert logs_hold_no_message_text_or_token.leaks() == []
