"""bench/fleet_load.py's layout: guilds spread evenly over the shards, and every process gets crisis posts.

Also ``--kill-after`` and ``--kill-shards``: their options, its schedule, the kill and restart themselves (on a stand-in process) and what
the report makes of them. Cheap and CI-safe: no bot process, Ray or PostgreSQL (the run itself needs all three,
docs/reliability-load.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import bench.fleet_load
from bench.discord_load import Sent
from bench.discord_traffic import Planned, plan_traffic
from bench.fleet_load import (
    KILLED_SHARDS,
    PROCESS_SHARDS,
    SHARD_COUNT,
    FleetOptions,
    FleetReport,
    KillReport,
    _add_guilds,
    _BotProcess,
    _kill_and_restart,
    _launch,
    _offered_while_down,
    kill_schedule,
    main,
)
from bot.sharding import parse_shard_ids, shard_of
from tests.discord_server import DiscordServer

REPO = Path(__file__).parents[2]
OPTIONS = FleetOptions(database_url="postgresql+asyncpg://unused/db", ray_address="127.0.0.1:6379")


def _process_of(guild_id: int) -> str:
    shard = shard_of(guild_id, SHARD_COUNT)
    return next(ids for ids in PROCESS_SHARDS if shard in parse_shard_ids(ids))


def test_guilds_are_spread_evenly_over_the_shards() -> None:
    guilds, _ = _add_guilds(DiscordServer(), OPTIONS)
    shards = Counter(shard_of(guild.id, SHARD_COUNT) for guild in guilds)
    assert shards == dict.fromkeys(range(SHARD_COUNT), OPTIONS.guilds // SHARD_COUNT)


def test_every_process_gets_crisis_posts() -> None:
    guilds, cast = _add_guilds(DiscordServer(), OPTIONS)
    plan = plan_traffic(
        round(OPTIONS.rate * OPTIONS.seconds),
        channels=len(cast.channels),
        seekers=OPTIONS.seekers,
        responders=OPTIONS.responders,
        crisis_every=OPTIONS.crisis_every,
    )
    crisis = Counter(_process_of(guilds[p.channel].id) for p in plan if p.crisis)
    assert set(crisis) == set(PROCESS_SHARDS) and min(crisis.values()) >= 5


def test_the_run_needs_a_database_and_a_ray_cluster() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.fleet_load"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "--database-url" in done.stderr and "--ray-address" in done.stderr


# -- --kill-after: a process SIGKILLed under load and started again ------------------------------------------


def test_no_kill_unless_asked() -> None:
    assert kill_schedule(OPTIONS) is None


def test_the_process_of_shards_2_3_is_killed_unless_told_otherwise() -> None:
    assert OPTIONS.kill_shards == KILLED_SHARDS == "2-3" and set(PROCESS_SHARDS) == {"0-1", "2-3"}


@pytest.mark.parametrize("kill_shards", PROCESS_SHARDS)
def test_either_process_can_be_killed(kill_shards: str) -> None:
    options = dataclasses.replace(
        OPTIONS, seconds=60, kill_after_s=20, restart_after_s=10, kill_shards=kill_shards
    )
    assert kill_schedule(options) == (20, 30)


def test_a_kill_of_shards_no_process_runs_is_refused() -> None:
    options = dataclasses.replace(OPTIONS, kill_after_s=20, kill_shards="1-2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="--kill-shards must be one of 0-1, 2-3"):
        kill_schedule(options)


def test_the_kill_falls_in_the_offer_and_the_restart_follows_it() -> None:
    options = dataclasses.replace(OPTIONS, seconds=60, kill_after_s=20, restart_after_s=10)
    assert kill_schedule(options) == (20, 30)
    # The restart may fall after the offer: the drain waits for it.
    assert kill_schedule(dataclasses.replace(options, kill_after_s=55)) == (55, 65)


@pytest.mark.parametrize(
    ("kill_after_s", "restart_after_s"), [(60.0, 10.0), (75.0, 10.0), (-1.0, 10.0), (20.0, 0.0)]
)
def test_a_kill_outside_the_offer_or_no_restart_is_refused(
    kill_after_s: float, restart_after_s: float
) -> None:
    options = dataclasses.replace(
        OPTIONS, seconds=60, kill_after_s=kill_after_s, restart_after_s=restart_after_s
    )
    with pytest.raises(ValueError, match=r"--kill-after|--restart-after"):
        kill_schedule(options)


REQUIRED = ["--database-url", OPTIONS.database_url, "--ray-address", OPTIONS.ray_address]


def test_the_kill_options_reach_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[FleetOptions] = []

    async def run(options: FleetOptions, *, work_dir: Path | None = None) -> FleetReport:
        seen.append(options)
        return FleetReport(options={}, machine="", started_utc="")

    monkeypatch.setattr(bench.fleet_load, "run_fleet_load", run)
    main([*REQUIRED, "--seconds", "60", "--kill-after", "20", "--restart-after", "5"])
    main(REQUIRED)
    main([*REQUIRED, "--kill-after", "20", "--kill-shards", "0-1"])
    assert [(o.kill_after_s, o.restart_after_s, o.kill_shards) for o in seen] == [
        (20, 5, "2-3"),
        (None, 10, "2-3"),
        (20, 10, "0-1"),
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--kill-after", "20", "--kill-shards", "0-3"], "--kill-shards: invalid choice: '0-3'"),
        (["--seconds", "30", "--kill-after", "30"], "--kill-after must fall inside the 30 s offer"),
    ],
)
def test_bad_kill_options_are_usage_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    monkeypatch.setattr(bench.fleet_load, "run_fleet_load", None)  # never reached
    with pytest.raises(SystemExit) as exited:
        main([*REQUIRED, *arguments])
    assert exited.value.code == 2 and message in capsys.readouterr().err


async def test_the_process_is_killed_and_started_again_on_schedule(tmp_path: Path) -> None:
    """A stand-in for `peercare run`: SIGKILLed at 0.3 s, the same command started again 0.4 s later."""
    log_path = tmp_path / "peercare.log"
    stand_in = (sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)")
    environment = {"PEERCARE_STAND_IN": "1"}
    bot = _BotProcess(
        KILLED_SHARDS, _launch(stand_in, log_path, environment), log_path, environment, stand_in
    )
    first = bot.process
    kill = KillReport(bot.shard_ids, first.pid)
    started = time.monotonic()
    try:
        await _kill_and_restart(bot, (0.3, 0.7), started, kill)
        assert first.returncode == -signal.SIGKILL == kill.killed_exit_code
        assert 0.3 <= kill.killed_at_s < 0.7 <= kill.restarted_at_s < 1.5
        assert bot.process is not first and kill.restarted_pid == bot.process.pid
        assert bot.process.poll() is None and bot.process.args == stand_in
        # The restarted process appends to the same log; its part begins where the killed one's ended.
        assert bot.log_offset == len(b"up\n")
        await asyncio.sleep(0.5)
        assert log_path.read_bytes() == b"up\nup\n"
    finally:
        for process in (first, bot.process):
            if process.poll() is None:
                process.kill()
                process.wait()


async def test_messages_posted_while_the_process_is_down_are_counted_by_guild_and_time() -> None:
    server = DiscordServer()
    guilds, cast = _add_guilds(server, OPTIONS)
    bot = _BotProcess(KILLED_SHARDS, None, Path("unused"), {})  # type: ignore[arg-type]
    mine = next(n for n, g in enumerate(guilds) if bot.owns(g.id))
    other = next(n for n, g in enumerate(guilds) if not bot.owns(g.id))
    kill = KillReport(KILLED_SHARDS, 1, killed_at_s=20.0, identified_at_s=35.0)
    sent = []
    for channel, at in [(mine, 19.0), (mine, 20.0), (mine, 30.0), (other, 30.0), (mine, 35.5)]:
        planned = Planned("post", conversation=len(sent), channel=channel, author=0, text="hello")
        message = await server.say(cast.channels[channel], cast.seekers[0], planned.text)
        sent.append(Sent(message, planned, at=100.0 + at))
    assert _offered_while_down(server, bot, sent, 100.0, kill) == 2


def test_the_report_says_what_the_kill_broke() -> None:
    report = FleetReport(options={}, machine="", started_utc="", drained=True)
    report.kill = KillReport(KILLED_SHARDS, 4242, killed_at_s=20.0, killed_exit_code=-9, messages_retried=3)
    assert "SIGKILLed 20.0s into the offer (exit -9)" in report.describe() and report.problems() == []
    report.kill.scored_not_stored_once = [11, 12]
    report.kill.scored_replies_without_dm = 1
    assert report.problems() == [
        "2 scored messages not stored exactly once",
        "1 scored replies got no coaching DM",
    ]
    assert report.to_json()["kill"]["messages_retried"] == 3
