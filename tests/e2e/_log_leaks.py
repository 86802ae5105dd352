"""Checks every end-to-end test's logs for members' message text and the bot token (issue 8, privacy).

``logs_hold_no_message_text_or_token`` is an autouse fixture (imported by ``tests/e2e/conftest.py``): for the
whole test it keeps every log record at the levels a production ``LOG_LEVEL=DEBUG`` run allows (PeerCare's
own code at DEBUG; discord.py and APScheduler at INFO; the loggers whose output carries payloads —
gateway frames, REST bodies, SQL parameters — at WARNING, as ``bot.logging_setup.configure_logging`` sets
them). At teardown, after the bot has shut down, it fails the test if any record contains a token the
loopback server issued or the text of any message, edit or modal answer a (non-bot) member sent.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from bot.logging_setup import PAYLOAD_LOGGERS, QUIET_LIBRARIES
from tests.discord_server import DiscordServer

log = logging.getLogger(__name__)

# Shorter texts ("ok", "thanks!") could match log wording by chance; a leak of a real post is longer.
MIN_SECRET_CHARS = 12
# Leaks are often truncated (an excerpt, a preview): a long text's opening is checked too.
PREFIX_CHARS = 24
OWN_LOGGERS = ("bot", "cogs", "inference", "tests.e2e")
# The loopback server plays Discord, which sees every message anyway: its own log lines are not the bot's.
NOT_THE_BOT = ("tests.discord_server", "aiohttp")


@dataclasses.dataclass(frozen=True)
class Leak:
    logger: str
    secret: str
    line: str

    def describe(self) -> str:
        return f"{self.logger}: contains {self.secret[:30]!r}… in {self.line[:200]!r}"


class LogCapture(logging.Handler):
    """Every record that reaches the root logger during one test."""

    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self.records: list[logging.LogRecord] = []
        self.servers: list[DiscordServer] = []
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> Iterator[tuple[str, str]]:
        for record in self.records:
            if record.name.startswith(NOT_THE_BOT):
                continue
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + self._formatter.formatException(record.exc_info)
            if record.stack_info:
                text += "\n" + record.stack_info
            yield record.name, text

    def secrets(self) -> tuple[list[str], list[str]]:
        """(tokens, member texts) known to the servers this test started."""
        tokens: list[str] = []
        texts: list[str] = []
        for server in self.servers:
            tokens.extend(server._tokens)
            texts.extend(member_texts(server))
        return tokens, texts

    def leaks(self) -> list[Leak]:
        tokens, texts = self.secrets()
        needles = [(t, t) for t in tokens] + [(n, t) for t in texts for n in _needles(t)]
        found: list[Leak] = []
        for name, line in self.lines():
            for needle, secret in needles:
                if needle in line:
                    found.append(Leak(name, secret, line))
                    break
        return found

    def forget(self, predicate: Any) -> None:
        """Drop records a test logged on purpose (the checker's own proof)."""
        self.records = [r for r in self.records if not predicate(r)]


def _worth_checking(text: str) -> bool:
    stripped = text.strip()
    return len(stripped) >= MIN_SECRET_CHARS and sum(ch.isalnum() for ch in stripped) >= MIN_SECRET_CHARS // 2


def _needles(text: str) -> list[str]:
    stripped = text.strip()
    needles = [stripped]
    if len(stripped) > PREFIX_CHARS and _worth_checking(stripped[:PREFIX_CHARS]):
        needles.append(stripped[:PREFIX_CHARS])
    return needles


def member_texts(server: DiscordServer) -> list[str]:
    """Texts members (not bots) sent: messages, their earlier versions, modal answers."""
    found: list[str] = []
    for message in server.world.messages.values():
        if message.author.bot:
            continue
        found.extend([message.content, *message.history])
    for interaction in server.interactions.values():
        found.extend(_modal_values(interaction.payload.get("data") or {}))
    return sorted({t for t in found if isinstance(t, str) and _worth_checking(t)})


def _modal_values(data: Any) -> Iterable[str]:
    if isinstance(data, dict):
        if isinstance(data.get("value"), str) and "custom_id" in data:
            yield data["value"]
        for value in data.values():
            yield from _modal_values(value)
    elif isinstance(data, list):
        for item in data:
            yield from _modal_values(item)


def _production_levels() -> dict[str, int]:
    levels = {name: logging.DEBUG for name in OWN_LOGGERS}
    levels.update({name: logging.INFO for name in QUIET_LIBRARIES})
    levels.update({name: logging.WARNING for name in PAYLOAD_LOGGERS})
    return levels


@pytest.fixture(autouse=True)
def logs_hold_no_message_text_or_token(monkeypatch: pytest.MonkeyPatch) -> Iterator[LogCapture]:
    capture = LogCapture()
    original_start = DiscordServer.start

    async def start(server: DiscordServer) -> DiscordServer:
        capture.servers.append(server)
        return await original_start(server)

    monkeypatch.setattr(DiscordServer, "start", start)
    levels = _production_levels()
    saved = {name: logging.getLogger(name).level for name in levels}
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    root = logging.getLogger()
    root.addHandler(capture)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
    leaks = capture.leaks()
    if leaks:
        details = "\n".join(leak.describe() for leak in leaks[:5])
        pytest.fail(f"{len(leaks)} log record(s) hold message text or a token:\n{details}")
