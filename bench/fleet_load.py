"""Load a fleet: two `peercare run` processes, two shards each, one PostgreSQL database, scoring on Ray Serve.

The fleet layout of docs/deploy.md on one machine. The loopback Discord server runs here (TCP on localhost) with
``--guilds`` guilds spread over 4 shards; two real OS processes run the production entry point (``python -m
bot.cli run``, only discord.py's two URLs redirected) with ``SHARD_COUNT=4`` and ``SHARD_IDS`` 0-1 and 2-3,
``DATABASE_URL`` the PostgreSQL database (migrated here with Alembic from empty) and ``INFERENCE_BACKEND=ray``
with ``RAY_ADDRESS`` a running Ray cluster. With ``--serve-replicas N`` the driver first deploys
deploy/ray-serve.yaml's app (CPU-sized: N replicas, no GPU) and both processes attach to it (``RAY_SERVE_APP``);
without, each process deploys its own one-replica app as a single bot does. Every guild is set up with slash
commands, then seeker posts and replies are offered open loop across all guilds (``bench.discord_load``'s traffic,
warm-up, drain and report).

With ``--kill-after S`` the process owning shards 2-3 (``--kill-shards 0-1``: the one owning shard 0, which also
receives every DM interaction) is SIGKILLed S seconds into the offer (no shutdown, as a crash or an OOM kill ends
it) and started again, same shards and environment, ``--restart-after`` seconds later, before the drain: what it
had received but not finished is recovered at its start, what was posted while it was down is read from history.
The report then says whether every offered message was still handled exactly once.
Use it with ``--serve-replicas``: a killed process that deployed its own Serve app leaves it on the cluster.

What is counted comes from outside the bot processes: each message's outcome and finish time in PostgreSQL,
what the loopback server received (alerts per crisis post, coaching DMs and their latency), RSS of each bot
process and of each Ray Serve replica, ERROR lines in each process's log.

    ray start --head --num-cpus=4 ...        # docs/reliability-load.md, "Fleet"
    python -m bench.fleet_load --database-url postgresql+asyncpg://postgres@127.0.0.1:55432/peercare_fleet \\
        --ray-address 127.0.0.1:6379 --guilds 200 --seconds 60 --rate 8 [--serve-replicas 2] [--json] \\
        [--kill-after 20 --restart-after 10 [--kill-shards 0-1]]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args

import psutil
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bench.discord_load import (
    MB,
    LoadReport,
    Sent,
    _Cast,
    _chunks,
    _collect_alerts,
    _collect_dms,
    _collect_outcomes,
    _collect_stored,
    _count_offered,
    _drain,
    _member_of,
    _offer,
    _set_up_as_moderators_would,
    _SlashProbe,
    load_arguments,
    offer_options,
    run_from_command_line,
)
from bench.discord_traffic import plan_traffic
from bot.db.migrate import downgrade_database, upgrade_database
from bot.db.models import (
    Checkin,
    CheckinSchedule,
    InboxMessage,
    InboxOutcome,
    RiskAssessment,
    ScoredReply,
)
from bot.db.session import Database
from bot.sharding import parse_shard_ids, shard_of
from tests.discord_server import DiscordServer, Guild, User
from tests.discord_server.redirect import redirect_environment
from tests.discord_server.world import Member

log = logging.getLogger(__name__)

SHARD_COUNT = 4
ProcessShards = Literal["0-1", "2-3"]  # SHARD_IDS of each bot process
PROCESS_SHARDS: tuple[ProcessShards, ...] = get_args(ProcessShards)
# The process --kill-after kills and starts again unless --kill-shards names the other.
KILLED_SHARDS: ProcessShards = "2-3"
BOT_COMMAND = (sys.executable, "-m", "bot.cli", "run")  # what `peercare run` runs
FLEET_READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
SAMPLE_EVERY_S = 1.0
# A process's log line at ERROR (bot.logging_setup's format: "<date> <time> ERROR   <logger>: <message>").
_ERROR_LINE = re.compile(r"^\S+ \S+ ERROR\s+(\S+: .*)$")
# A bot process's log line once its inference client can score (inference/backends/ray_serve.py).
_INFERENCE_READY = b"inference ready on Ray Serve"
# A Serve replica's process title: "ray::ServeReplica:<app>:scorer[.<method it runs now>]" (another while starting).
_REPLICA_TITLE = re.compile(r"ServeReplica:([^:\s]+):")
# Settings the bot processes get from this driver only, never from the caller's environment.
_OWN_SETTINGS = (
    "DISCORD_",
    "DATABASE_",
    "SHARD_",
    "INFERENCE_",
    "RAY_ADDRESS",
    "RAY_SERVE_APP",
    "DEV_GUILD_ID",
    "LOG_LEVEL",
)


@dataclass(frozen=True)
class FleetOptions:
    database_url: str
    ray_address: str
    guilds: int = 200
    seconds: float = 60.0
    rate: float = 8.0  # replies offered per second over all guilds (posts come on top)
    seekers: int = 8  # members of every guild
    responders: int = 2  # members of every guild, opted into coaching in each
    crisis_every: int = 8
    warmup_replies: int = 16  # about 5 conversations, on guilds 0..4: every shard
    drain_s: float = 240.0
    slash_every_s: float = 2.0
    seed: int = 0
    setup_concurrency: int = 8
    # A member turns daily check-ins on in every guild, all due at the same minute during the run (as "09:30 UTC"
    # everywhere would be): each schedule must fire exactly once, by the process owning its guild.
    checkins: bool = True
    # Torch threads of each Ray replica (INFERENCE_CPU_THREADS of each bot process, or the shared app's cpu_threads).
    replica_threads: int = 1
    # 0: each bot process deploys its own one-replica Serve app. N: the driver deploys deploy/ray-serve.yaml's app with
    # N replicas of 1 CPU each (no GPU; the file's batching) and both processes attach to it with RAY_SERVE_APP.
    serve_replicas: int = 0
    # Seconds into the offer at which the ``kill_shards`` process is SIGKILLed (None: no kill), and how long it stays
    # down before it is started again.
    kill_after_s: float | None = None
    restart_after_s: float = 10.0
    kill_shards: ProcessShards = KILLED_SHARDS


def kill_schedule(options: FleetOptions) -> tuple[float, float] | None:
    """(kill, restart) in seconds from the start of the offer, or None without ``kill_after_s``.

    The kill falls inside the offer, so the killed process has messages in flight and more are posted to its
    guilds while it is down; the restart may fall after the offer, but the drain waits for it.
    """
    if options.kill_after_s is None:
        return None
    if not 0 <= options.kill_after_s < options.seconds:
        raise ValueError(f"--kill-after must fall inside the {options.seconds:g} s offer")
    if options.restart_after_s <= 0:
        raise ValueError("--restart-after must be more than 0 s")
    if options.kill_shards not in PROCESS_SHARDS:
        raise ValueError(f"--kill-shards must be one of {', '.join(PROCESS_SHARDS)}")
    return options.kill_after_s, options.kill_after_s + options.restart_after_s


@dataclass
class KillReport:
    """The process killed under load, when (seconds from the start of the offer), and whether every message was
    still handled exactly once: what a crash can break and a clean stop cannot."""

    shard_ids: str
    killed_pid: int
    killed_at_s: float = float("nan")
    killed_exit_code: int | None = None
    restarted_pid: int = 0
    restarted_at_s: float = float("nan")
    identified_at_s: float = float("nan")  # its shards connected again
    inference_ready_at_s: float = float("nan")  # its log says it can score again
    offered_while_down: int = 0  # messages posted in its guilds from the kill until its shards were back
    messages_retried: int = 0  # offered messages the inbox started more than once (attempts > 1)
    # Offered messages with a scored outcome whose stored result (a post's risk assessment, a reply's scored row)
    # is not there exactly once: their ids.
    scored_not_stored_once: list[int] = field(default_factory=list)
    scored_replies_without_dm: int = 0
    # The slash probe's guild (the cast's test server) is on its shards: the probe goes unanswered while it is down.
    slash_probe_on_it: bool = False


@dataclass
class ProcessReport:
    """One bot process: its shards, its guilds' share of the traffic, what it finished, its memory and errors."""

    shard_ids: str
    pid: int
    guilds: int = 0
    posts_offered: int = 0
    replies_offered: int = 0
    replies_scored: int = 0
    replies_scored_in_offered_phase: int = 0
    replies_shed: int = 0
    crisis_posts: int = 0
    crisis_posts_high: int = 0
    high_risk_posts: int = 0  # offered posts the models put in the high tier (crisis or not)
    alerts: int = 0  # alerts posted for those posts' cases
    high_risk_members: int = 0  # members who wrote them: each has one case, so one alert
    high_risk_members_not_alerted_once: int = 0
    checkins_sent: int = 0  # check-ins its guilds' schedules fired (rows in `checkins`)
    rss_start_mb: float = float("nan")
    rss_peak_mb: float = float("nan")
    rss_end_mb: float = float("nan")
    exit_code: int | None = None
    errors_logged: list[str] = field(default_factory=list)


@dataclass
class FleetReport(LoadReport):
    """``LoadReport`` for the whole fleet, plus each process's share and the Ray replicas' memory."""

    processes: list[ProcessReport] = field(default_factory=list)
    guilds_with_traffic: int = 0
    load_average_1m_at_start: float = float("nan")
    serve_app: str = ""  # the shared Serve app both processes attached to; empty: one app per process
    # Ray Serve replicas by process title, peak RSS; and the rest of Ray on this machine (GCS, raylet, agents,
    # the Serve controller), summed at its peak
    replica_rss_peak_mb: dict[str, float] = field(default_factory=dict)
    ray_other_rss_peak_mb: float = float("nan")
    driver_rss_peak_mb: float = float("nan")  # this process: loopback server + load generator
    checkin_schedules: int = 0
    checkins_due_utc: str = ""
    checkins_sent: int = 0  # check-in rows in the database (one per schedule firing)
    checkin_dms: int = 0  # check-in DMs the loopback server received
    schedules_fired_not_once: int = 0  # schedules with no check-in, or more than one
    fleet_connected_s: float = float("nan")  # from starting the processes to every shard identified
    setup_seconds: float = float("nan")  # the moderators' and responders' slash commands in every guild
    kill: KillReport | None = None

    def describe(self) -> str:
        # The base report's in-flight and RSS lines measure an in-process client and worker: not here.
        lines = [
            line
            for line in super().describe().splitlines()
            if not line.startswith(("  in flight", "  RSS MiB"))
        ]
        serve = f"shared app {self.serve_app}" if self.serve_app else "one app per process"
        lines.insert(
            1,
            f"  fleet     : {len(self.processes)} bot processes x 2 shards of {SHARD_COUNT}, "
            f"{self.guilds_with_traffic} guilds with traffic; load average 1 min at start "
            f"{self.load_average_1m_at_start:.1f}; Serve: {serve}; connected in {self.fleet_connected_s:.1f}s, "
            f"every guild set up in {self.setup_seconds:.1f}s",
        )
        for p in self.processes:
            lines.append(
                f"  process {p.shard_ids}: {p.guilds} guilds; offered {p.posts_offered} posts "
                f"({p.crisis_posts} crisis) + {p.replies_offered} replies; scored {p.replies_scored} replies "
                f"({p.replies_scored_in_offered_phase} during the offer), shed {p.replies_shed}; "
                f"high-risk posts {p.high_risk_posts} ({p.crisis_posts_high} of {p.crisis_posts} crisis), alerts "
                f"{p.alerts} for {p.high_risk_members} members, not exactly one {p.high_risk_members_not_alerted_once}; check-ins {p.checkins_sent}; RSS MiB {p.rss_start_mb:.0f} -> peak "
                f"{p.rss_peak_mb:.0f}, end {p.rss_end_mb:.0f}; errors {len(p.errors_logged)}; exit {p.exit_code}"
            )
        lines.append(
            f"  check-ins : {self.checkin_schedules} schedules due at {self.checkins_due_utc or '-'}; "
            f"{self.checkins_sent} sent, {self.checkin_dms} DMs; schedules not fired exactly once "
            f"{self.schedules_fired_not_once}"
        )
        replicas = ", ".join(f"{name} {mb:.0f}" for name, mb in sorted(self.replica_rss_peak_mb.items()))
        lines.append(
            f"  Ray MiB   : replicas peak {replicas or 'none found'}; the rest of Ray {self.ray_other_rss_peak_mb:.0f}"
            f"; driver (loopback server + generator) peak {self.driver_rss_peak_mb:.0f}"
        )
        if (k := self.kill) is not None:
            lines.append(
                f"  kill      : process {k.shard_ids} (pid {k.killed_pid}) SIGKILLed {k.killed_at_s:.1f}s into the "
                f"offer (exit {k.killed_exit_code}); started again at {k.restarted_at_s:.1f}s (pid "
                f"{k.restarted_pid}), shards connected at {k.identified_at_s:.1f}s, inference ready at "
                f"{k.inference_ready_at_s:.1f}s; {k.offered_while_down} messages posted in its guilds meanwhile; "
                f"the slash probe's guild {'is' if k.slash_probe_on_it else 'is not'} on its shards"
            )
            lines.append(
                f"  once      : {k.messages_retried} offered messages started again by the inbox; scored but not "
                f"stored exactly once {len(k.scored_not_stored_once)}; scored replies without a coaching DM "
                f"{k.scored_replies_without_dm}; in more than one DM {len(self.replies_in_several_dms)}"
            )
        return "\n".join(lines)

    def problems(self) -> list[str]:
        found = super().problems()
        if self.schedules_fired_not_once or self.checkin_dms != self.checkins_sent:
            found.append(
                f"{self.schedules_fired_not_once} check-in schedules did not fire exactly once "
                f"({self.checkins_sent} check-ins, {self.checkin_dms} DMs)"
            )
        if self.kill is not None and self.kill.scored_not_stored_once:
            found.append(f"{len(self.kill.scored_not_stored_once)} scored messages not stored exactly once")
        if self.kill is not None and self.kill.scored_replies_without_dm:
            found.append(f"{self.kill.scored_replies_without_dm} scored replies got no coaching DM")
        return found


def _launch(command: tuple[str, ...], log_path: Path, environment: dict[str, str]) -> subprocess.Popen[bytes]:
    """One bot process in its log's folder (no .env of the checkout is read), appending to its log."""
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            command, cwd=log_path.parent, env=environment, stdout=log_file, stderr=subprocess.STDOUT
        )


@dataclass
class _BotProcess:
    shard_ids: str
    process: subprocess.Popen[bytes]
    log_path: Path
    environment: dict[str, str]
    command: tuple[str, ...] = BOT_COMMAND
    rss: list[float] = field(default_factory=list)
    log_offset: int = 0  # where the running process's part of the log begins (after a restart)

    def owns(self, guild_id: int) -> bool:
        return shard_of(guild_id, SHARD_COUNT) in parse_shard_ids(self.shard_ids)

    def restart(self) -> None:
        """The same command and environment again, as an operator's supervisor would; the log is kept."""
        self.log_offset = self.log_path.stat().st_size
        self.process = _launch(self.command, self.log_path, self.environment)


class _FleetSamples:
    """RSS of the bot processes, the Ray Serve replicas, the rest of Ray and this driver, on a timer."""

    def __init__(self, bots: list[_BotProcess]) -> None:
        self.bots = bots
        self.me = psutil.Process()
        self.driver_rss: list[float] = []
        self.replica_rss: dict[str, float] = {}
        self.ray_other_rss: list[float] = []

    async def run(self) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(SAMPLE_EVERY_S)

    def sample(self) -> None:
        self.driver_rss.append(self.me.memory_info().rss / MB)
        for bot in self.bots:
            with contextlib.suppress(psutil.Error):
                bot.rss.append(psutil.Process(bot.process.pid).memory_info().rss / MB)
        other = 0.0
        for proc in psutil.process_iter(["name", "cmdline", "memory_info"]):
            with contextlib.suppress(psutil.Error, TypeError):
                title = " ".join(proc.info["cmdline"] or [proc.info["name"] or ""])
                rss = proc.info["memory_info"].rss / MB
                replica = _REPLICA_TITLE.search(title)
                if replica is not None:
                    name = f"{replica[1]} pid {proc.pid}"
                    self.replica_rss[name] = max(self.replica_rss.get(name, 0.0), rss)
                elif "ray::" in title or "/site-packages/ray/" in title:
                    other += rss
        self.ray_other_rss.append(other)


@contextlib.contextmanager
def _shared_serve_app(options: FleetOptions) -> Iterator[str]:
    """deploy/ray-serve.yaml's app on the cluster, CPU-sized, for the bot processes to attach to (RAY_SERVE_APP);
    deleted afterwards. Yields its name, or "" (each process deploys its own) when ``serve_replicas`` is 0."""
    if not options.serve_replicas:
        yield ""
        return
    import ray
    from ray import serve

    from tests.support.ray_serve_app import cpu_serve_config, deploy_serve_config

    config = cpu_serve_config(
        replicas=options.serve_replicas, replica_cpus=1, args={"cpu_threads": options.replica_threads}
    )
    ray.init(address=options.ray_address, log_to_driver=False)
    try:
        name = deploy_serve_config(config)
        try:
            yield name
        finally:
            serve.delete(name)
    finally:
        ray.shutdown()


def _start_bot(
    server: DiscordServer, token: str, shard_ids: str, options: FleetOptions, folder: Path, serve_app: str
) -> _BotProcess:
    """`peercare run` (python -m bot.cli run) in its own process, as an operator runs it on a fleet machine."""
    workdir = folder / f"shards-{shard_ids}"
    workdir.mkdir()
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(_OWN_SETTINGS)},
        **redirect_environment(server, workdir),
        "DISCORD_TOKEN": token,
        "DATABASE_URL": options.database_url,
        "SHARD_COUNT": str(SHARD_COUNT),
        "SHARD_IDS": shard_ids,
        "INFERENCE_BACKEND": "ray",
        "RAY_ADDRESS": options.ray_address,
        "RAY_SERVE_APP": serve_app,
        "INFERENCE_DEVICE": "cpu",
        "INFERENCE_CPU_THREADS": str(options.replica_threads),
        "LOG_LEVEL": "INFO",
    }
    log_path = workdir / "peercare.log"
    return _BotProcess(shard_ids, _launch(BOT_COMMAND, log_path, environment), log_path, environment)


def _errors_in(path: Path) -> list[str]:
    lines = path.read_text(errors="replace").splitlines()
    return [found[1][:300] for line in lines if (found := _ERROR_LINE.match(line))]


async def _stop(bots: list[_BotProcess]) -> None:
    for bot in bots:
        if bot.process.poll() is None:
            bot.process.send_signal(signal.SIGTERM)
    for bot in bots:
        try:
            await asyncio.to_thread(bot.process.wait, STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("bot process %s did not stop after SIGTERM: killed", bot.shard_ids)
            bot.process.kill()
            bot.process.wait()


async def _fleet_connected(server: DiscordServer, bots: list[_BotProcess]) -> None:
    """Every shard identified and both processes' commands synced; a process that exits ends the wait."""

    def ready() -> bool:
        shards = {s.shard for s in server.gateway.live_sessions()}
        synced = server.requests.find(method="PUT", path="*/applications/*/commands")
        return len(shards) == SHARD_COUNT and len(synced) >= len(bots)

    deadline = time.monotonic() + FLEET_READY_TIMEOUT_S
    while not ready():
        for bot in bots:
            if bot.process.poll() is not None:
                tail = bot.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(
                    f"bot process {bot.shard_ids} exited early ({bot.process.returncode}):\n{tail}"
                )
        if time.monotonic() > deadline:
            raise TimeoutError(f"the fleet was not connected after {FLEET_READY_TIMEOUT_S:g}s")
        await asyncio.sleep(0.5)
    await asyncio.sleep(3.0)  # discord.py's guild-ready wait after the last GUILD_CREATE


async def _kill_and_restart(
    bot: _BotProcess, schedule: tuple[float, float], offer_started: float, kill: KillReport
) -> None:
    """SIGKILL ``bot`` and start it again on ``schedule`` (seconds from ``offer_started``, monotonic).

    SIGKILL, not SIGTERM: nothing is flushed or handed back, its gateway sessions drop without a goodbye, work it
    had received stays half done in the database, as after a crash or an OOM kill.
    """
    kill_at, restart_at = schedule
    await asyncio.sleep(max(0.0, offer_started + kill_at - time.monotonic()))
    bot.process.send_signal(signal.SIGKILL)
    kill.killed_at_s = time.monotonic() - offer_started
    kill.killed_exit_code = await asyncio.to_thread(bot.process.wait)
    await asyncio.sleep(max(0.0, offer_started + restart_at - time.monotonic()))
    bot.restart()
    kill.restarted_at_s = time.monotonic() - offer_started
    kill.restarted_pid = bot.process.pid


async def _kill_and_come_back(
    server: DiscordServer,
    bot: _BotProcess,
    schedule: tuple[float, float],
    offer_started: float,
    kill: KillReport,
) -> None:
    """``_kill_and_restart``, then ``_back_online`` at once, while the offer goes on: its times are when it
    happened (watched only after the offer, a process back during it was timed at the offer's end)."""
    await _kill_and_restart(bot, schedule, offer_started, kill)
    await _back_online(server, bot, offer_started, kill)


async def _back_online(
    server: DiscordServer, bot: _BotProcess, offer_started: float, kill: KillReport
) -> None:
    """Until the restarted ``bot``'s shards are connected again and its log says it can score: the drain gives
    up when nothing moves for a few seconds, which a process still attaching to Ray Serve would look like."""
    shards = set(parse_shard_ids(bot.shard_ids))
    identified: float | None = None
    ready: float | None = None
    deadline = time.monotonic() + FLEET_READY_TIMEOUT_S
    while identified is None or ready is None:
        now = time.monotonic() - offer_started
        # Its killed sessions stay resumable on the server but are no longer connected: connected ones are new.
        connected = {s.shard[0] for s in server.gateway.live_sessions() if s.connected}
        if identified is None and shards <= connected:
            identified = now
        if ready is None and _INFERENCE_READY in bot.log_path.read_bytes()[bot.log_offset :]:
            ready = now
        if bot.process.poll() is not None:
            raise RuntimeError(
                f"bot process {bot.shard_ids} exited after its restart ({bot.process.returncode})"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"bot process {bot.shard_ids} not back {FLEET_READY_TIMEOUT_S:g}s after its restart"
            )
        await asyncio.sleep(0.5)
    kill.identified_at_s, kill.inference_ready_at_s = identified, ready


def _add_guilds(server: DiscordServer, options: FleetOptions) -> tuple[list[Guild], _Cast]:
    """``options.guilds`` guilds round-robin over the shards; every seeker and responder a member of each."""
    world = server.world
    seekers = [world.add_user(f"seeker-{n:02d}") for n in range(1, options.seekers + 1)]
    responders = [world.add_user(f"responder-{n:02d}") for n in range(1, options.responders + 1)]
    # Shards shuffled, equal shares: round-robin would put every crisis post (every 8th conversation, in guild
    # conversation % guilds) on one shard.
    shards = [n % SHARD_COUNT for n in range(options.guilds)]
    random.Random(options.seed).shuffle(shards)
    guilds = []
    for n, shard in enumerate(shards):
        guild = world.add_guild(f"Community {n:03d}", shard=(shard, SHARD_COUNT))
        for user in seekers + responders:
            guild.members[user.id] = Member(user, [])
        guilds.append(guild)
    # One support channel per guild: the traffic's "channel" index is the guild's index.
    return guilds, _Cast([g.channel_named("support") for g in guilds], seekers, responders)


async def _set_up_every_guild(
    server: DiscordServer, guilds: list[Guild], cast: _Cast, concurrency: int
) -> None:
    room = asyncio.Semaphore(concurrency)

    async def one(guild: Guild) -> None:
        async with room:
            await _set_up_as_moderators_would(
                server,
                [guild.channel_named("support")],
                cast.responders,
                moderator=server.cast.owner,
                alert_channel=guild.channel_named("mod-alerts"),
                moderator_role=next(r for r in guild.roles.values() if r.name == "Moderator"),
            )

    await asyncio.gather(*(one(guild) for guild in guilds))


async def _turn_on_checkins(
    server: DiscordServer, guilds: list[Guild], member: User, concurrency: int
) -> datetime:
    """``member`` turns daily check-ins on in every guild, due at a whole minute 10-70 s from now (UTC): during the
    warm-up or the offer, before the drain ends."""
    due = (datetime.now(UTC) + timedelta(seconds=70)).replace(second=0, microsecond=0)
    room = asyncio.Semaphore(concurrency)

    async def one(guild: Guild) -> None:
        async with room:
            options = {"cadence": "daily", "time": f"{due:%H:%M}", "timezone": "UTC"}
            command = await server.slash(
                "peercare checkin on", options, user=member, channel=guild.channel_named("general")
            )
            await command.reply(timeout=30.0)

    await asyncio.gather(*(one(guild) for guild in guilds))
    return due


async def _collect_checkins(
    server: DiscordServer, database: Database, member: User, bots: list[_BotProcess], report: FleetReport
) -> None:
    """Schedules, the check-ins they fired (one row each), and the check-in DMs the member received."""
    async with database.session() as session:
        schedules = list(await session.scalars(select(CheckinSchedule.id)))
        fired = Counter(await session.scalars(select(Checkin.schedule_id)))
        by_guild = Counter(await session.scalars(select(Checkin.guild_id)))
    report.checkin_schedules = len(schedules)
    report.checkins_sent = sum(fired.values())
    report.schedules_fired_not_once = sum(1 for schedule in schedules if fired[schedule] != 1)
    report.checkin_dms = sum(
        1
        for message in server.dms_to(member)
        if any(i.startswith("peercare:checkin:okay:") for i in message.custom_ids())
    )
    for bot, row in zip(bots, report.processes, strict=True):
        row.checkins_sent = sum(n for guild, n in by_guild.items() if bot.owns(guild))


def _inbox_progress(database: Database, sent: list[Sent]) -> Callable[[], Awaitable[tuple[int, int]]]:
    """``_drain``'s progress from PostgreSQL: messages with a final outcome (nothing is metered in-process here)."""
    ids = [s.message.id for s in sent]

    async def progress() -> tuple[int, int]:
        async with database.session() as session:
            done = await session.scalar(
                select(func.count()).where(
                    InboxMessage.message_id.in_(ids), InboxMessage.outcome != InboxOutcome.PENDING
                )
            )
        return int(done or 0), 0

    return progress


async def _finished(
    database: Database, sent: list[Sent]
) -> dict[int, tuple[InboxOutcome, str | None, datetime | None]]:
    """message id -> (outcome, skip reason, finished at) in the inbox, for the offered messages."""
    ids = [s.message.id for s in sent]
    found = {}
    async with database.session() as session:
        for start in range(0, len(ids), 500):
            rows = await session.execute(
                select(
                    InboxMessage.message_id,
                    InboxMessage.outcome,
                    InboxMessage.skip_reason,
                    InboxMessage.finished_at,
                ).where(InboxMessage.message_id.in_(ids[start : start + 500]))
            )
            found.update({row[0]: (InboxOutcome(row[1]), row[2], row[3]) for row in rows})
    return found


def _redacted(options: FleetOptions) -> dict[str, Any]:
    data = dataclasses.asdict(options)
    data["database_url"] = make_url(options.database_url).render_as_string(hide_password=True)
    return data


def _machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{cores} CPU cores, load average {load}, CPU only"


async def run_fleet_load(options: FleetOptions, *, work_dir: Path | None = None) -> FleetReport:
    """One whole fleet run: migrate, start the server and both bot processes, set up, warm up, offer, drain,
    collect, stop."""
    report = FleetReport(
        options=_redacted(options),
        machine=_machine(),
        started_utc=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        load_average_1m_at_start=os.getloadavg()[0],
    )
    # From empty, whatever an earlier run left (Alembic, as `peercare db upgrade` does).
    await asyncio.to_thread(downgrade_database, options.database_url, "base")
    await asyncio.to_thread(upgrade_database, options.database_url)
    database = Database(options.database_url)
    server = await DiscordServer(shard_count=SHARD_COUNT).start()
    with contextlib.ExitStack() as stack:
        folder = work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="peercare-fleet-")))
        bots: list[_BotProcess] = []
        try:
            # Deployed before the bots start (they wait while its replicas load), deleted after they stop.
            report.serve_app = stack.enter_context(_shared_serve_app(options))
            guilds, cast = _add_guilds(server, options)
            token = server.new_token()  # one bot, one token: every shard of the fleet logs in with it
            bots = [
                _start_bot(server, token, ids, options, folder, report.serve_app) for ids in PROCESS_SHARDS
            ]
            report.processes = [ProcessReport(b.shard_ids, b.process.pid) for b in bots]
            samples = _FleetSamples(bots)
            sampler = asyncio.create_task(samples.run(), name="fleet-samples")
            try:
                started = time.monotonic()
                await _fleet_connected(server, bots)
                report.fleet_connected_s = time.monotonic() - started
                for bot, row in zip(bots, report.processes, strict=True):
                    row.rss_start_mb = bot.rss[-1] if bot.rss else float("nan")
                started = time.monotonic()
                await _set_up_every_guild(server, guilds, cast, options.setup_concurrency)
                if options.checkins:
                    due = await _turn_on_checkins(server, guilds, cast.seekers[0], options.setup_concurrency)
                    report.checkins_due_utc = f"{due:%H:%M}"
                report.setup_seconds = time.monotonic() - started
                sent, window = await _warm_up_and_offer(server, database, bots, guilds, cast, options, report)
                await _collect_per_process(server, database, bots, guilds, report, sent, window)
                await _collect_checkins(server, database, cast.seekers[0], bots, report)
            finally:
                sampler.cancel()
                _collect_memory(bots, report, samples)
        finally:
            await _stop(bots)
            await server.stop()
            await database.close()
        for bot, row in zip(bots, report.processes, strict=True):
            row.exit_code = bot.process.returncode
            row.errors_logged = _errors_in(bot.log_path)
            report.errors_logged += [f"{bot.shard_ids}: {line}" for line in row.errors_logged]
    return report


async def _warm_up_and_offer(
    server: DiscordServer,
    database: Database,
    bots: list[_BotProcess],
    guilds: list[Guild],
    cast: _Cast,
    options: FleetOptions,
    report: FleetReport,
) -> tuple[list[Sent], tuple[datetime, datetime]]:
    """Warm up, offer (killing and restarting a process meanwhile with ``kill_after_s``), drain and collect the
    fleet-wide report; returns the offered messages and the offer's window (UTC)."""
    in_these_guilds = functools.partial(
        plan_traffic, channels=len(guilds), seekers=options.seekers, responders=options.responders
    )
    # Warm-up on the first guilds (every shard): each replica's first batches and each process's first DMs.
    # The replicas load the models meanwhile: replies wait for them.
    warm_plan = in_these_guilds(options.warmup_replies, crisis_every=0, seed=options.seed + 1)
    warm, _ = await _offer(server, cast, warm_plan, 2.0, warmup=True)
    await _drain(server, _inbox_progress(database, warm), len(warm), options.drain_s)

    plan = in_these_guilds(
        round(options.rate * options.seconds), crisis_every=options.crisis_every, seed=options.seed
    )
    probe = _SlashProbe(server, [server.cast.carol, server.cast.owner], options.slash_every_s)
    prober = asyncio.create_task(probe.run(), name="fleet-slash-probe")
    offered_from, since = time.monotonic(), datetime.now(UTC)
    schedule = kill_schedule(options)
    victim = next(b for b in bots if b.shard_ids == options.kill_shards)
    killer = None
    if schedule is not None:
        report.kill = KillReport(
            victim.shard_ids, victim.process.pid, slash_probe_on_it=victim.owns(server.cast.guild.id)
        )
        killer = asyncio.create_task(
            _kill_and_come_back(server, victim, schedule, offered_from, report.kill), name="fleet-kill"
        )
    try:
        sent, report.max_send_lag_s = await _offer(server, cast, plan, options.seconds)
        offered_until, until = time.monotonic(), datetime.now(UTC)
        prober.cancel()
        if killer is not None and report.kill is not None:
            await killer  # back before the drain, which would give up on a process still starting
            report.kill.offered_while_down = _offered_while_down(
                server, victim, sent, offered_from, report.kill
            )
    finally:
        prober.cancel()
        if killer is not None:
            killer.cancel()  # a failed offer: no restart behind the driver's back
    everything = warm + sent
    report.drained, report.drain_seconds = await _drain(
        server, _inbox_progress(database, everything), len(everything), options.drain_s
    )
    await probe.finish()
    probe.record(report)

    _count_offered(report, sent, offered_until - offered_from)
    report.guilds_with_traffic = len({s.planned.channel for s in sent})
    await _collect_outcomes(database, report, everything)
    escalations = await _collect_stored(database, report, everything)
    _collect_alerts(server, report, escalations, [g.channel_named("mod-alerts") for g in guilds])
    _collect_dms(server, report, everything)
    if report.kill is not None:
        await _collect_exactly_once(database, report, report.kill, everything)
    return sent, (since, until)


def _offered_while_down(
    server: DiscordServer, bot: _BotProcess, sent: list[Sent], offer_started: float, kill: KillReport
) -> int:
    """Messages posted in ``bot``'s guilds from its kill until its shards were connected again: no process
    received them live, only its start-up catch-up from history can find them."""
    return sum(
        1
        for s in sent
        if kill.killed_at_s <= s.at - offer_started <= kill.identified_at_s
        and bot.owns(server.world.channels[s.message.channel_id].guild_id)
    )


async def _collect_exactly_once(
    database: Database, report: FleetReport, kill: KillReport, everything: list[Sent]
) -> None:
    """After a kill: each scored message's stored result there once, each scored reply coached, and how many
    messages the inbox started again (received by the killed process, finished by its successor).

    A message lost, or handled twice, by the kill shows here or in the base report (no outcome, pending, a reply
    in several DMs, a high-risk post without exactly one alert); a retried message is not a fault by itself.
    """
    finished = await _finished(database, everything)
    scored = {i for i, (outcome, _, _) in finished.items() if outcome is InboxOutcome.SCORED}
    posts = [s.message.id for s in everything if s.planned.kind == "post"]
    replies = [s.message.id for s in everything if s.planned.kind == "reply"]
    stored: Counter[int] = Counter()
    async with database.session() as session:
        for chunk in _chunks(posts, 500):
            stored.update(
                await session.scalars(
                    select(RiskAssessment.message_id).where(
                        RiskAssessment.source == "post", RiskAssessment.message_id.in_(chunk)
                    )
                )
            )
        for chunk in _chunks(replies, 500):
            stored.update(
                await session.scalars(
                    select(ScoredReply.reply_message_id).where(ScoredReply.reply_message_id.in_(chunk))
                )
            )
        for chunk in _chunks(posts + replies, 500):
            retried = await session.scalar(
                select(func.count()).where(InboxMessage.message_id.in_(chunk), InboxMessage.attempts > 1)
            )
            kill.messages_retried += int(retried or 0)
    kill.scored_not_stored_once = sorted(i for i in scored if stored[i] != 1)
    # Only offered replies are counted in DMs (bench.discord_load._collect_dms), and only scored ones are coached.
    kill.scored_replies_without_dm = max(0, len(scored.intersection(replies)) - report.replies_with_dm)


async def _collect_per_process(
    server: DiscordServer,
    database: Database,
    bots: list[_BotProcess],
    guilds: list[Guild],
    report: FleetReport,
    sent: list[Sent],
    window: tuple[datetime, datetime],
) -> None:
    """Offered, scored (during the offer and in all), shed and alerted, by the process owning each guild."""
    finished = await _finished(database, sent)
    async with database.session() as session:
        high = set(
            await session.scalars(
                select(RiskAssessment.message_id).where(
                    RiskAssessment.source == "post", RiskAssessment.tier == "high"
                )
            )
        )
    since, until = window
    counted_members: set[tuple[int, int]] = set()
    rows = dict(zip((b.shard_ids for b in bots), report.processes, strict=True))
    for guild in guilds:
        for bot in bots:
            if bot.owns(guild.id):
                rows[bot.shard_ids].guilds += 1
    for s in sent:
        guild_id = server.world.channels[s.message.channel_id].guild_id
        row = rows[next(b.shard_ids for b in bots if b.owns(guild_id))]
        outcome, skip_reason, finished_at = finished.get(s.message.id, (InboxOutcome.PENDING, None, None))
        if s.planned.kind == "post":
            row.posts_offered += 1
            row.crisis_posts += s.planned.crisis
            if s.message.id in high:
                row.high_risk_posts += 1
                row.crisis_posts_high += s.planned.crisis
                row.alerts += report.high_risk_posts_alert_count.get(s.message.id, 0)
                member = _member_of(s.message)
                if member not in counted_members:
                    counted_members.add(member)
                    row.high_risk_members += 1
                    row.high_risk_members_not_alerted_once += (
                        report.high_risk_members_alert_count.get(member, 0) != 1
                    )
            continue
        row.replies_offered += 1
        if outcome is InboxOutcome.SCORED:
            row.replies_scored += 1
            if finished_at is not None and since <= finished_at <= until:
                row.replies_scored_in_offered_phase += 1
        elif skip_reason == "shed":
            row.replies_shed += 1
    report.replies_scored = sum(p.replies_scored for p in report.processes)
    report.replies_scored_in_offered_phase = sum(p.replies_scored_in_offered_phase for p in report.processes)
    report.scored_replies_per_s = report.replies_scored_in_offered_phase / report.offered_seconds
    report.replies_shed = sum(p.replies_shed for p in report.processes)


def _collect_memory(bots: list[_BotProcess], report: FleetReport, samples: _FleetSamples) -> None:
    for bot, row in zip(bots, report.processes, strict=True):
        if bot.rss:
            row.rss_peak_mb, row.rss_end_mb = max(bot.rss), bot.rss[-1]
    report.replica_rss_peak_mb = dict(samples.replica_rss)
    report.ray_other_rss_peak_mb = max(samples.ray_other_rss, default=float("nan"))
    report.driver_rss_peak_mb = max(samples.driver_rss, default=float("nan"))


def main(argv: list[str] | None = None) -> int:
    parser = load_arguments(__doc__.splitlines()[0], FleetOptions)
    parser.add_argument(
        "--database-url", required=True, help="PostgreSQL (postgresql+asyncpg://...), emptied first"
    )
    parser.add_argument("--ray-address", required=True, help="RAY_ADDRESS of a running Ray cluster")
    parser.add_argument("--guilds", type=int, default=FleetOptions.guilds)
    parser.add_argument(
        "--replica-threads", type=int, default=FleetOptions.replica_threads, help="torch threads per replica"
    )
    parser.add_argument(
        "--serve-replicas",
        type=int,
        default=FleetOptions.serve_replicas,
        help="deploy deploy/ray-serve.yaml's app with this many replicas and attach both processes to it "
        "(0: each process deploys its own)",
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep the bot processes' logs in this folder")
    parser.add_argument(
        "--kill-after",
        type=float,
        default=None,
        help="SIGKILL the process of --kill-shards this many seconds into the offer",
    )
    parser.add_argument(
        "--kill-shards",
        choices=PROCESS_SHARDS,
        default=KILLED_SHARDS,
        help="the process --kill-after kills: 0-1 (shard 0 also receives the DM interactions) or 2-3",
    )
    parser.add_argument(
        "--restart-after",
        type=float,
        default=FleetOptions.restart_after_s,
        help="start the killed process again this many seconds after the kill (before the drain)",
    )

    def run(args: argparse.Namespace) -> Awaitable[LoadReport]:
        options = FleetOptions(
            **offer_options(args),
            database_url=args.database_url,
            ray_address=args.ray_address,
            guilds=args.guilds,
            replica_threads=args.replica_threads,
            serve_replicas=args.serve_replicas,
            kill_after_s=args.kill_after,
            restart_after_s=args.restart_after,
            kill_shards=args.kill_shards,
        )
        try:
            kill_schedule(options)
        except ValueError as exc:
            parser.error(str(exc))
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
        return run_fleet_load(options, work_dir=args.keep)

    return run_from_command_line(parser, argv, run)


if __name__ == "__main__":
    raise SystemExit(main())
