"""`peercare run` with a token Discord rejects: one clear line and exit code 2, no traceback."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import discord
import pytest
import yarl

from bot.cli import main
from tests.discord_server.server import DiscordServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def loopback_in_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[DiscordServer]:
    """The loopback server on its own loop, so `peercare run` can own the main thread's loop as in production."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(DiscordServer().start(), loop).result(timeout=30)
    monkeypatch.setattr(discord.http.Route, "BASE", server.api_base)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(server.gateway.url))
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        yield server
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def test_rejected_token_gives_a_clear_login_error_and_exit_2(
    loopback_in_thread: DiscordServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISCORD_TOKEN", "not-a-token-discord-knows")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'peercare.db'}")
    monkeypatch.setenv("INFERENCE_BACKEND", "inprocess")

    code = main(["run"])

    err = capsys.readouterr().err
    assert code == 2
    assert "peercare: error: Discord rejected DISCORD_TOKEN (login failed)" in err
    assert "Traceback" not in err
    assert "not-a-token-discord-knows" not in err
    assert loopback_in_thread.requests.find(method="GET", path="*/users/@me"), "the bot never tried to log in"
