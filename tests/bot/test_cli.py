"""The `peercare` command line as a user runs it: a real subprocess, exit codes and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in {"DISCORD_TOKEN", "DATABASE_URL"}}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_lists_the_subcommands(tmp_path: Path) -> None:
    result = _run(["--help"], tmp_path)
    assert result.returncode == 0
    for name in ("run", "db", "train", "eval"):
        assert name in result.stdout


def test_run_without_token_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    result = _run(["run"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "peercare: error: DISCORD_TOKEN is not set: put your bot token in .env (see .env.example and README)"
    ]
    assert "Traceback" not in result.stderr


def test_malformed_setting_exits_2_without_traceback(tmp_path: Path) -> None:
    result = _run(["run"], tmp_path, DISCORD_TOKEN="x", INFERENCE_MAX_WAIT_MS="soon")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "INFERENCE_MAX_WAIT_MS" in result.stderr


def test_run_with_some_shards_on_sqlite_refuses_in_one_line(tmp_path: Path) -> None:
    result = _run(["run"], tmp_path, DISCORD_TOKEN="x", SHARD_COUNT="2", SHARD_IDS="1")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("peercare: error: SHARD_IDS is invalid: runs only some shards")
    assert "SQLite is one process only" in line and "DATABASE_URL=postgresql://" in line
    assert not (tmp_path / "peercare.db").exists()  # refused before touching the database


def test_db_upgrade_creates_the_default_sqlite_file(tmp_path: Path) -> None:
    result = _run(["db", "upgrade"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "peercare.db").is_file()
    current = _run(["db", "current"], tmp_path)
    assert "(head)" in current.stdout


@pytest.mark.parametrize("env_line", ["DATABASE_URL=mysql://nope"])
def test_env_file_in_working_directory_is_validated(tmp_path: Path, env_line: str) -> None:
    (tmp_path / ".env").write_text(env_line + "\n")
    result = _run(["db", "upgrade"], tmp_path)
    assert result.returncode == 2
    assert "DATABASE_URL is invalid" in result.stderr
