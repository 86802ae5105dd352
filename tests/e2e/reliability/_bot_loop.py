"""One real bot on one event loop for a whole hypothesis run.

Hypothesis's ``@given`` cannot take pytest-asyncio's function-scoped async fixtures, and starting a bot per
example would cost a second each. So a *sync* test opens an ``asyncio.Runner``, starts the loopback server
and the real bot on it (the same ``BotRunner`` and ``E2E`` helpers the ``e2e`` fixture uses), and each
hypothesis example runs to completion on that loop with ``loop.run(...)``. Shrinking works as usual: a
failing example is replayed on the same bot, and the falsifying text is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import discord
import pytest
import yarl

from inference.config import InferenceConfig
from tests.discord_server import DiscordServer
from tests.e2e.conftest import E2E, WATCHED_LOGGERS, BotRunner, LoadedEngines, _ErrorLog

log = logging.getLogger(__name__)


@contextlib.contextmanager
def bot_on_its_own_loop(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    inference_config: InferenceConfig,
    engines: LoadedEngines,
    settings: dict[str, Any] | None = None,
) -> Iterator[tuple[asyncio.Runner, E2E]]:
    """(loop, e2e): run coroutines with ``loop.run(...)``; fails on errors the bot logged, like ``e2e``."""
    with asyncio.Runner() as loop:
        server = loop.run(DiscordServer().start())
        monkeypatch.setattr(discord.http.Route, "BASE", server.api_base)
        monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(server.gateway.url))
        runner = BotRunner(server, database_url, inference_config, dict(settings or {}), [], engines)
        errors = _ErrorLog(runner)
        loggers = [logging.getLogger(name) for name in WATCHED_LOGGERS]
        for logger in loggers:
            logger.addHandler(errors)
        try:
            loop.run(runner.start())
            harness = E2E(server, runner, errors)
            yield loop, harness
            with contextlib.suppress(AssertionError):
                loop.run(server.settle(quiet=0.15, timeout=5.0))
        finally:
            loop.run(runner.stop())
            loop.run(server.stop())
            for logger in loggers:
                logger.removeHandler(errors)
        unhandled = server.requests.unhandled()
        assert not unhandled, f"the bot called routes the loopback server lacks: {unhandled}"


def copy_database(template: Path, folder: Path) -> str:
    path = folder / "peercare.db"
    path.write_bytes(template.read_bytes())
    return f"sqlite+aiosqlite:///{path}"
