"""Logs never contain message text or the bot token, whatever the bot does with a message."""

from __future__ import annotations

import logging

import pytest

from bot.logging_setup import PAYLOAD_LOGGERS, QUIET_LIBRARIES, configure_logging
from tests.e2e import safety_support
from tests.e2e._features import coaching_on, settings_for, wait_for_stored_reply

pytestmark = pytest.mark.e2e

# Distinctive words that appear in no log format string, so any leak of the text is found.
SEEKER_SECRET = "zebracorn"
REPLY_SECRET = "quillfeather"


class _EverythingLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def e2e_settings(e2e_inference_config):
    return {**settings_for(e2e_inference_config), "log_level": "DEBUG"}


@pytest.fixture
def every_log_line():
    """PeerCare's own logging set-up at DEBUG (as `peercare run` does), with every line kept."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_levels = {name: logging.getLogger(name).level for name in (*QUIET_LIBRARIES, *PAYLOAD_LOGGERS)}
    configure_logging("DEBUG")
    handler = _EverythingLog()
    handler.setFormatter(logging.Formatter("%(name)s %(message)s %(exc_text)s"))
    root.addHandler(handler)
    try:
        yield handler.lines
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)


async def test_logs_never_contain_message_text_or_token(e2e, every_log_line):
    await safety_support.go_live(e2e)
    await coaching_on(e2e, e2e.cast.bob)
    crisis = await safety_support.post_crisis(e2e, text=f"{safety_support.CRISIS_POST} {SEEKER_SECRET}")
    reply = await e2e.say(
        e2e.cast.support, e2e.cast.bob, f"That sounds so hard, {REPLY_SECRET}. I'm here.", reply_to=crisis
    )
    await wait_for_stored_reply(e2e, reply.id)
    await safety_support.wait_for_alert(e2e)
    await e2e.wait_for_dm(e2e.cast.bob, timeout=15.0)
    await e2e.edit(reply, f"That sounds so hard, {REPLY_SECRET}. I'm here for you.")
    await e2e.delete(reply)
    await e2e.settle()

    assert every_log_line, "the bot logged nothing: the capture is broken"
    joined = "\n".join(every_log_line).lower()
    assert SEEKER_SECRET not in joined
    assert REPLY_SECRET not in joined
    assert e2e.runner.token not in "\n".join(every_log_line)
