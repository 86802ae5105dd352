"""Secrets: the bot token comes only from the environment or `.env`, `.env` stays out of git, no token is committed."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.logging_setup import PAYLOAD_LOGGERS, QUIET_LIBRARIES, configure_logging
from bot.settings import SettingsError, load_settings

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[2]
# A Discord bot token: base64 user id, a 6-character timestamp, a 27+ character HMAC, dot-separated.
DISCORD_TOKEN_SHAPE = re.compile(r"\b[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,40}\b")
BINARY_SUFFIXES = {
    ".png",
    ".jpg",
    ".gif",
    ".pt",
    ".bin",
    ".safetensors",
    ".db",
    ".pkl",
    ".npy",
    ".gz",
    ".zip",
}
# Made up at run time (not written in the repo, or the scan below would find it).
FAKE_TOKEN = ".".join(["MTA" + "x" * 23, "Gabc12", "y" * 38])

needs_git = pytest.mark.skipif(
    shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs a git checkout"
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No token from outside, and none left behind (load_dotenv writes to os.environ directly)."""
    saved = dict(os.environ)
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)


@needs_git
def test_dot_env_is_ignored_by_git() -> None:
    assert _git("check-ignore", "--quiet", ".env").returncode == 0
    assert _git("ls-files", "--error-unmatch", ".env").returncode != 0, ".env is tracked"


def test_token_shape_matches_a_discord_token() -> None:
    assert DISCORD_TOKEN_SHAPE.search(f"DISCORD_TOKEN={FAKE_TOKEN}")
    assert not DISCORD_TOKEN_SHAPE.search("loopback.abcdefghijklmnopqrstuvwxyz0123")


@needs_git
def test_no_tracked_file_holds_a_discord_token() -> None:
    tracked = _git("ls-files", "-z").stdout.split("\0")
    found = []
    scanned = 0
    for name in filter(None, tracked):
        path = REPO / name
        if path.suffix in BINARY_SUFFIXES or not path.is_file() or path.stat().st_size > 5_000_000:
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        scanned += 1
        found.extend(f"{name}: {m.group(0)[:12]}…" for m in DISCORD_TOKEN_SHAPE.finditer(text))
    assert scanned > 100
    assert found == []


def test_example_env_file_holds_no_token() -> None:
    lines = (REPO / ".env.example").read_text().splitlines()
    assert "DISCORD_TOKEN=" in lines


def test_token_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", FAKE_TOKEN)
    assert load_settings(env_file=None).require_token() == FAKE_TOKEN


def test_token_is_read_from_dot_env(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(f"DISCORD_TOKEN={FAKE_TOKEN}\n")
    assert load_settings(env_file=env).require_token() == FAKE_TOKEN


def test_environment_wins_over_dot_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text("DISCORD_TOKEN=from-the-file\n")
    monkeypatch.setenv("DISCORD_TOKEN", FAKE_TOKEN)
    assert load_settings(env_file=env).require_token() == FAKE_TOKEN


def test_token_never_appears_when_settings_are_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", FAKE_TOKEN)
    settings = load_settings(env_file=None)
    shown = [repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())]
    assert all(FAKE_TOKEN not in text for text in shown)


def test_token_never_appears_in_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("DATABASE_URL", f"mysql://{FAKE_TOKEN}")
    with pytest.raises(SettingsError) as raised:
        load_settings(env_file=None)
    assert FAKE_TOKEN not in str(raised.value)


def test_logging_blanks_the_token_if_a_library_logs_it() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_levels = {name: logging.getLogger(name).level for name in (*QUIET_LIBRARIES, *PAYLOAD_LOGGERS)}
    configure_logging("INFO", secrets=[FAKE_TOKEN])
    handler = root.handlers[0]
    try:
        record = logging.LogRecord("discord.http", logging.INFO, __file__, 1, "auth %s", (FAKE_TOKEN,), None)
        handler.filter(record)
        assert FAKE_TOKEN not in record.getMessage()
        assert "[redacted]" in record.getMessage()
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
