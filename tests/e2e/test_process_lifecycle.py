"""`peercare run` as an operator runs it: a rejected token, and a clean shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
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


# The production entry point in its own process: only the two URLs are redirected, by a sitecustomize shim.
_REDIRECT_SHIM = """
import os
if os.environ.get("PEERCARE_TEST_API_BASE"):
    import discord.gateway
    import discord.http
    import yarl
    discord.http.Route.BASE = os.environ["PEERCARE_TEST_API_BASE"]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["PEERCARE_TEST_GATEWAY"])
"""


def test_sigterm_shuts_the_bot_down_cleanly(loopback_in_thread: DiscordServer, tmp_path: Path) -> None:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(_REDIRECT_SHIM)
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "DATABASE_"))},
        "PYTHONPATH": os.pathsep.join([str(shim), str(Path(__file__).resolve().parents[2])]),
        "PEERCARE_TEST_API_BASE": loopback_in_thread.api_base,
        "PEERCARE_TEST_GATEWAY": loopback_in_thread.gateway.url,
        "DISCORD_TOKEN": loopback_in_thread.new_token(),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'peercare.db'}",
        "INFERENCE_BACKEND": "inprocess",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run"],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not loopback_in_thread.requests.find(method="PUT", path="*/applications/*/commands"):
            assert process.poll() is None, f"peercare run exited early: {process.communicate()[1][-2000:]}"
            assert time.monotonic() < deadline, "the bot never synced its commands"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0, err[-2000:]
    assert "shutting down" in err
    assert "Traceback" not in err
    assert environment["DISCORD_TOKEN"] not in err
    assert (tmp_path / "peercare.db").is_file()
