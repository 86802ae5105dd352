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

from bot.app import run_bot
from bot.cli import main
from bot.db.migrate import upgrade_database
from bot.settings import load_settings
from inference.errors import InferenceUnavailable
from inference.types import ReplyScore, ReplyScoreRequest, RiskScore, RiskScoreRequest
from tests.discord_server.redirect import redirect_environment
from tests.discord_server.server import DiscordServer
from tests.support.processes import killed_on_exit

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


def test_sigterm_shuts_the_bot_down_cleanly(loopback_in_thread: DiscordServer, tmp_path: Path) -> None:
    # The production entry point in its own process: only the two URLs are redirected, by a sitecustomize shim.
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "DATABASE_"))},
        **redirect_environment(loopback_in_thread, tmp_path),
        "DISCORD_TOKEN": loopback_in_thread.new_token(),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'peercare.db'}",
        "INFERENCE_BACKEND": "inprocess",
    }
    running = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run"],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with killed_on_exit(running) as process:
        deadline = time.monotonic() + 90
        while not loopback_in_thread.requests.find(method="PUT", path="*/applications/*/commands"):
            assert process.poll() is None, f"peercare run exited early: {process.communicate()[1][-2000:]}"
            assert time.monotonic() < deadline, "the bot never synced its commands"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)

    assert process.returncode == 0, err[-2000:]
    assert "shutting down" in err
    assert "Traceback" not in err
    assert environment["DISCORD_TOKEN"] not in err
    assert (tmp_path / "peercare.db").is_file()


class _SlowToStop:
    """An inference client whose close takes a while, as a Ray Serve backend deleting its application does."""

    ready = True

    def __init__(self) -> None:
        self.closed = False

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await asyncio.sleep(0.5)
        self.closed = True

    async def score_reply(self, request: ReplyScoreRequest) -> ReplyScore:
        raise InferenceUnavailable("no models in this test")

    async def score_risk(self, request: RiskScoreRequest) -> RiskScore:
        raise InferenceUnavailable("no models in this test")


def test_sigterm_waits_for_the_models_to_stop(
    loopback_in_thread: DiscordServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = _SlowToStop()
    monkeypatch.setattr("inference.factory.create_inference_client", lambda config: models)
    settings = load_settings(
        env_file=None,
        discord_token=loopback_in_thread.new_token(),
        database_url=f"sqlite:///{tmp_path / 'peercare.db'}",
        inference_backend="inprocess",
    )
    upgrade_database(settings.database_url)

    def terminate_once_running() -> None:
        deadline = time.monotonic() + 60
        while not loopback_in_thread.requests.find(method="PUT", path="*/applications/*/commands"):
            if time.monotonic() > deadline:
                return  # the test fails below: run_bot never got going
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)  # run_bot's handler, as `kill <pid>` reaches `peercare run`

    threading.Thread(target=terminate_once_running, daemon=True).start()
    asyncio.run(asyncio.wait_for(run_bot(settings), timeout=90))

    assert models.closed, "run_bot returned before the inference client had closed"
