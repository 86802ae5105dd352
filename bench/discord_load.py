"""Load the real bot through the loopback Discord server above what its models can score, and report.

The unmodified bot (every cog, Alembic-migrated SQLite, the default ``worker`` inference backend with the
shipped models on CPU) runs against ``tests.discord_server.DiscordServer`` in this process. Seeker posts and
replies are offered in several opted-in support channels at a steady rate, open loop (on a timer, never
waiting for an answer), for a bounded time; then the bot drains (bounded). Meanwhile the run samples the
inference requests in flight, this process's and the worker's RSS, and times a slash command every few
seconds. The report says what was offered and scored, each message's outcome, the latency from a reply
being sent to its coaching DM, and whether every crisis post reached moderators exactly once.

    python -m bench.discord_load --seconds 60 --rate 40 [--json]

``bot+server`` RSS is this whole process: the bot, and the loopback server's record of every message and
request (a few KB per message, which grows with the run by design).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import discord
import psutil
import yarl
from sqlalchemy import select

from bench.discord_traffic import Planned, plan_traffic
from bench.load import percentile
from bench.metered_inference import MeteredInference
from bot.app import PeerCareBot, create_bot, extension_names
from bot.db.migrate import upgrade_database_async
from bot.db.models import Escalation, InboxMessage, InboxOutcome, RiskAssessment, ScoredReply
from bot.db.session import Database
from bot.inference_config import inference_config_from_settings
from bot.services.escalation_delivery import ALERT_FOOTER_PREFIX
from bot.settings import Settings
from inference.factory import create_inference_client
from tests.discord_server import Channel, DiscordServer, Message, Role, User
from tests.discord_server.world import Member

log = logging.getLogger(__name__)

BOT_READY_TIMEOUT_S = 60.0
MODELS_READY_TIMEOUT_S = 180.0
SLASH_ANSWER_TIMEOUT_S = 30.0
SAMPLE_EVERY_S = 0.25
# Drained: the bot made no request for QUIET_S; given up: nothing answered or in flight for STALL_S.
QUIET_S = 1.0
STALL_S = 5.0
# Loggers whose ERROR records count against the run (a traceback in a listener under load is a bug).
WATCHED_LOGGERS = ("bot", "cogs", "inference", "discord", "apscheduler", "sqlalchemy")
_JUMP_URL = re.compile(r"channels/\d+/\d+/(\d+)")
_ALERT_ID = re.compile(re.escape(ALERT_FOOTER_PREFIX) + r"(\d+)")
MB = 1024 * 1024


@dataclass(frozen=True)
class LoadOptions:
    seconds: float = 60.0
    rate: float = 40.0  # replies offered per second (their posts come on top, about one per 3.4 replies)
    channels: int = 3
    seekers: int = 8
    # Each responder is opted into coaching; with the daily cap of 50 notes, enough of them that none hits it.
    responders: int = 40
    crisis_every: int = 8  # every 8th post is a crisis post
    warmup_conversations: int = 4
    drain_s: float = 120.0
    slash_every_s: float = 2.0
    seed: int = 0
    # INFERENCE_CPU_THREADS for the worker (None: the bot's default, every core it may use).
    worker_threads: int | None = None


@dataclass
class Sent:
    message: Message
    planned: Planned
    at: float  # monotonic, just before the gateway event was sent
    warmup: bool = False


@dataclass
class LoadReport:
    """Everything measured; ``problems()`` lists the functional properties the run broke."""

    options: dict[str, Any]
    machine: str
    started_utc: str
    # offered
    offered_seconds: float = 0.0
    posts_offered: int = 0
    replies_offered: int = 0
    crisis_posts_offered: int = 0
    offered_replies_per_s: float = 0.0
    offered_messages_per_s: float = 0.0
    max_send_lag_s: float = 0.0
    # scored (the models' answers, as the bot got them)
    replies_scored: int = 0
    replies_scored_in_offered_phase: int = 0
    scored_replies_per_s: float = 0.0  # during the offered phase
    replies_shed: int = 0
    # reply requests by priority ("risk": the parent's risk not yet stored, so never shed)
    reply_priorities: dict[str, int] = field(default_factory=dict)
    inference_failures: dict[str, int] = field(default_factory=dict)
    drain_seconds: float = 0.0
    drained: bool = False
    # the bot's inference requests in flight (queued in the worker + being scored + waiting for room),
    # sampled through the offered phase and the drain
    queue_depth_max: int = 0
    queue_depth_mean: float = 0.0
    # how late the event loop ran a 0.25 s timer: the bot's own busyness (it shares the loop with the server)
    loop_lag_p99_s: float = float("nan")
    loop_lag_max_s: float = float("nan")
    # outcomes (the message inbox), for every offered message
    messages_checked: int = 0  # every message offered, warm-up included
    outcomes: dict[str, int] = field(default_factory=dict)
    skip_reasons: dict[str, int] = field(default_factory=dict)
    messages_without_outcome: list[int] = field(default_factory=list)
    messages_pending: list[int] = field(default_factory=list)
    skipped_without_reason: list[int] = field(default_factory=list)
    # what the bot stored
    replies_stored: int = 0
    coaching_status: dict[str, int] = field(default_factory=dict)
    # coaching DMs
    coaching_dms: int = 0
    replies_with_dm: int = 0
    replies_in_several_dms: list[int] = field(default_factory=list)
    dm_latency_p50_s: float = float("nan")
    dm_latency_p99_s: float = float("nan")
    dm_latency_max_s: float = float("nan")
    # escalation
    high_risk_posts: int = 0
    crisis_posts_high: int = 0
    alerts_posted: int = 0
    high_risk_posts_alert_count: dict[int, int] = field(default_factory=dict)  # post id -> alerts
    # A member's high-risk messages join their one open case (issue 15): one alert per member, not per post.
    high_risk_members_alert_count: dict[tuple[int, int], int] = field(default_factory=dict)  # (guild, member)
    # slash commands
    slash_commands: int = 0
    slash_unanswered: int = 0
    slash_p50_s: float = float("nan")
    slash_p99_s: float = float("nan")
    slash_max_s: float = float("nan")
    # memory (MiB)
    bot_rss_start_mb: float = float("nan")
    bot_rss_baseline_mb: float = float("nan")  # after warm-up
    bot_rss_peak_mb: float = float("nan")
    bot_rss_end_mb: float = float("nan")
    worker_rss_baseline_mb: float = float("nan")
    worker_rss_peak_mb: float = float("nan")
    # peaks in the first and second half of the offered phase: a leak keeps climbing, a working set levels off
    bot_rss_peak_halves_mb: tuple[float, float] = (float("nan"), float("nan"))
    worker_rss_peak_halves_mb: tuple[float, float] = (float("nan"), float("nan"))
    worker_rss_end_mb: float = float("nan")
    errors_logged: list[str] = field(default_factory=list)  # "logger: message" (ids only in our logs)
    unhandled_requests: list[str] = field(default_factory=list)  # routes the loopback server lacks

    @property
    def bot_rss_growth_mb(self) -> float:
        return self.bot_rss_peak_mb - self.bot_rss_baseline_mb

    @property
    def worker_rss_growth_mb(self) -> float:
        return self.worker_rss_peak_mb - self.worker_rss_baseline_mb

    def problems(self) -> list[str]:
        """The functional properties (not speed) this run broke, one line each."""
        found = []
        if not self.drained:
            found.append(f"the bot had not drained after {self.drain_seconds:.0f}s")
        # Message ids that must all be empty after a good run: each list is reported by its length.
        offending = (
            (self.messages_without_outcome, "offered messages have no outcome row"),
            (self.messages_pending, "offered messages still pending after the drain"),
            (self.skipped_without_reason, "skipped messages have no reason"),
            (self.replies_in_several_dms, "replies were coached in more than one DM"),
        )
        found.extend(f"{len(ids)} {what}" for ids, what in offending if ids)
        if self.crisis_posts_high < self.crisis_posts_offered:
            found.append(
                f"only {self.crisis_posts_high} of {self.crisis_posts_offered} crisis posts were tiered high"
            )
        wrong = {member: n for member, n in self.high_risk_members_alert_count.items() if n != 1}
        if wrong:
            found.append(
                f"{len(wrong)} members with a high-risk post did not get exactly one alert: {sorted(wrong.values())}"
            )
        if self.slash_unanswered:
            found.append(f"{self.slash_unanswered} slash commands were not answered")
        if self.unhandled_requests:
            found.append(f"the bot called routes the loopback server lacks: {self.unhandled_requests[:3]}")
        if self.errors_logged:
            found.append(f"the bot logged {len(self.errors_logged)} errors: {self.errors_logged[:3]}")
        return found

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["bot_rss_growth_mb"] = self.bot_rss_growth_mb
        data["worker_rss_growth_mb"] = self.worker_rss_growth_mb
        data["problems"] = self.problems()
        data["high_risk_posts_alert_count"] = {str(k): v for k, v in self.high_risk_posts_alert_count.items()}
        data["high_risk_members_alert_count"] = {
            str(k): v for k, v in self.high_risk_members_alert_count.items()
        }
        return data

    def describe(self) -> str:
        """The report as a person reads it."""
        lines = [
            f"Discord load run, {self.started_utc}, {self.machine}",
            f"  options: {self.options}",
            f"  offered   : {self.posts_offered} posts ({self.crisis_posts_offered} crisis) + "
            f"{self.replies_offered} replies in {self.offered_seconds:.1f}s = "
            f"{self.offered_replies_per_s:.1f} replies/s ({self.offered_messages_per_s:.1f} messages/s); "
            f"sender lag max {self.max_send_lag_s * 1000:.0f} ms",
            f"  scored    : {self.scored_replies_per_s:.1f} replies/s during the offered phase "
            f"({self.replies_scored_in_offered_phase}); {self.replies_scored} in all; shed {self.replies_shed}; "
            f"reply requests by priority {self.reply_priorities}; failures {self.inference_failures or 'none'}",
            f"  drain     : {'done' if self.drained else 'NOT done'} in {self.drain_seconds:.1f}s",
            f"  in flight : max {self.queue_depth_max}, mean {self.queue_depth_mean:.1f} inference requests; "
            f"event loop lag p99 {self.loop_lag_p99_s * 1000:.0f} ms, max {self.loop_lag_max_s * 1000:.0f} ms",
            f"  outcomes  : {self.outcomes}; "
            f"skip reasons {self.skip_reasons or 'none'}; without outcome {len(self.messages_without_outcome)}, "
            f"pending {len(self.messages_pending)}",
            f"  stored    : {self.replies_stored} replies; coaching status {self.coaching_status}",
            f"  coaching  : {self.coaching_dms} DMs covering {self.replies_with_dm} replies; "
            f"reply -> DM p50 {self.dm_latency_p50_s:.2f}s, p99 {self.dm_latency_p99_s:.2f}s, "
            f"max {self.dm_latency_max_s:.2f}s; replies in >1 DM: {len(self.replies_in_several_dms)}",
            f"  escalation: {self.high_risk_posts} high-risk posts ({self.crisis_posts_high} of "
            f"{self.crisis_posts_offered} crisis posts) by {len(self.high_risk_members_alert_count)} members, "
            f"{self.alerts_posted} alerts; alerts per member "
            f"{sorted(Counter(self.high_risk_members_alert_count.values()).items())}",
            f"  slash     : {self.slash_commands} `/peercare privacy`, unanswered {self.slash_unanswered}; "
            f"p50 {self.slash_p50_s:.2f}s, p99 {self.slash_p99_s:.2f}s, max {self.slash_max_s:.2f}s",
            f"  RSS MiB   : bot+server start {self.bot_rss_start_mb:.0f}, after warm-up "
            f"{self.bot_rss_baseline_mb:.0f}, peak {self.bot_rss_peak_mb:.0f}, end {self.bot_rss_end_mb:.0f}; "
            f"worker after warm-up {self.worker_rss_baseline_mb:.0f}, peak {self.worker_rss_peak_mb:.0f}, "
            f"end {self.worker_rss_end_mb:.0f}; offered-phase peaks by half: bot+server "
            f"{self.bot_rss_peak_halves_mb[0]:.0f} / {self.bot_rss_peak_halves_mb[1]:.0f}, worker "
            f"{self.worker_rss_peak_halves_mb[0]:.0f} / {self.worker_rss_peak_halves_mb[1]:.0f}",
            f"  errors    : {len(self.errors_logged)}",
            f"  problems  : {self.problems() or 'none'}",
        ]
        return "\n".join(lines)


class _ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = f"{record.name}: {record.getMessage()}"[:300]
        if record.exc_info and record.exc_info[1] is not None:
            line += f" [{_exception_kind(record.exc_info[1])}]"
        self.lines.append(line)


def _exception_kind(exc: BaseException) -> str:
    """The exception's type and its driver error's first line; never the statement or its parameters (text)."""
    kind = type(exc).__name__
    orig = getattr(exc, "orig", None)
    if orig is not None:
        first = (str(orig).splitlines() or [""])[0][:80]
        kind += f" ({type(orig).__name__}: {first})"
    return kind


@contextlib.contextmanager
def _errors_watched() -> Iterator[_ErrorLog]:
    handler = _ErrorLog()
    loggers = [logging.getLogger(name) for name in WATCHED_LOGGERS]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


@contextlib.contextmanager
def _discord_pointed_at(server: DiscordServer) -> Iterator[None]:
    """discord.py's REST base and gateway URL point at the loopback server, and back afterwards."""
    route_base = discord.http.Route.BASE
    gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = server.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(server.gateway.url)
    try:
        yield
    finally:
        discord.http.Route.BASE = route_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway


class _Samples:
    """Inference requests in flight and RSS, sampled on a timer."""

    def __init__(self, inference: MeteredInference) -> None:
        self.inference = inference
        self.me = psutil.Process()
        self.depths: list[int] = []
        self.bot_rss: list[float] = []
        self.worker_rss: list[float] = []
        self.lags: list[float] = []
        self.recording_depth = False  # offered phase and drain
        self.recording_offered = False
        self.offered_rss: list[tuple[float, float]] = []  # (bot, worker) during the offered phase

    def rss(self) -> tuple[float, float]:
        worker = float("nan")
        pid = self.inference.pid
        if pid is not None:
            with contextlib.suppress(psutil.Error):
                worker = psutil.Process(pid).memory_info().rss / MB
        return self.me.memory_info().rss / MB, worker

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            bot, worker = self.rss()
            self.bot_rss.append(bot)
            self.worker_rss.append(worker)
            if self.recording_depth:
                self.depths.append(self.inference.meter.in_flight)
            if self.recording_offered:
                self.offered_rss.append((bot, worker))
            due = loop.time() + SAMPLE_EVERY_S
            await asyncio.sleep(SAMPLE_EVERY_S)
            if self.recording_offered:
                self.lags.append(max(0.0, loop.time() - due))

    def peaks_by_half(self, which: int) -> tuple[float, float]:
        values = [sample[which] for sample in self.offered_rss if sample[which] == sample[which]]
        if len(values) < 2:
            return float("nan"), float("nan")
        middle = len(values) // 2
        return max(values[:middle]), max(values[middle:])


class _SlashProbe:
    """A member runs `/peercare privacy` every few seconds; each answer is timed (none waits for another)."""

    def __init__(self, server: DiscordServer, users: list[User], every_s: float) -> None:
        self.server = server
        self.users = users
        self.every_s = every_s
        self.times: list[float] = []
        self.unanswered = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        turn = 0
        while True:
            task = asyncio.create_task(self._one(self.users[turn % len(self.users)]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            turn += 1
            await asyncio.sleep(self.every_s)

    async def _one(self, user: User) -> None:
        started = time.monotonic()
        try:
            interaction = await self.server.slash("peercare privacy", user=user)
            await interaction.reply(timeout=SLASH_ANSWER_TIMEOUT_S)
        except Exception as exc:  # a timeout is the finding, not a crash of the run
            log.warning("slash command unanswered: %s", type(exc).__name__)
            self.unanswered += 1
            return
        self.times.append(time.monotonic() - started)

    async def finish(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=SLASH_ANSWER_TIMEOUT_S + 5)

    def record(self, report: LoadReport) -> None:
        report.slash_commands = len(self.times) + self.unanswered
        report.slash_unanswered = self.unanswered
        if self.times:
            report.slash_p50_s = statistics.median(self.times)
            report.slash_p99_s = percentile(self.times, 0.99)
            report.slash_max_s = max(self.times)


@dataclass
class _Cast:
    channels: list[Channel]
    seekers: list[User]
    responders: list[User]


def _add_people_and_places(server: DiscordServer, options: LoadOptions) -> _Cast:
    """Support channels, seekers and responders, added before the bot connects (GUILD_CREATE carries them)."""
    world, guild = server.world, server.cast.guild
    channels = [server.cast.support] + [
        world.add_channel(guild, f"support-{n}", position=10 + n) for n in range(2, options.channels + 1)
    ]

    def members(prefix: str, count: int) -> list[User]:
        users = []
        for n in range(1, count + 1):
            user = world.add_user(f"{prefix}-{n:02d}")
            guild.members[user.id] = Member(user, [])
            users.append(user)
        return users

    return _Cast(channels, members("seeker", options.seekers), members("responder", options.responders))


async def _set_up_as_moderators_would(
    server: DiscordServer,
    channels: list[Channel],
    responders: list[User],
    *,
    moderator: User,
    alert_channel: Channel,
    moderator_role: Role,
) -> None:
    """Slash commands only, in the channels' guild: opt the channels in, go live with alerts on, responders opt
    into coaching."""
    general = server.world.guilds[channels[0].guild_id].channel_named("general")
    for channel in channels:
        command = await server.slash(
            "peercare channel add", {"channel": channel}, user=moderator, channel=general
        )
        await command.reply(timeout=30.0)
    setup = await server.slash(
        "peercare setup",
        {
            "alert_channel": alert_channel,
            "moderator_role": moderator_role,
            "shadow_mode": False,
            "escalation_default": "yes",
            # One note per reply as soon as it is scored: the load measures the pipeline, not the pacing.
            "coaching_interval_minutes": 0,
            "coaching_daily_cap": 50,
        },
        user=moderator,
        channel=general,
    )
    await setup.reply(timeout=30.0)
    for responder in responders:
        command = await server.slash("peercare coaching on", user=responder, channel=channels[0])
        await command.reply(timeout=30.0)


async def _offer(
    server: DiscordServer, cast: _Cast, plan: list[Planned], seconds: float, *, warmup: bool = False
) -> tuple[list[Sent], float]:
    """Send ``plan`` evenly over ``seconds`` (open loop: late sends catch up). Returns (sent, max lag)."""
    loop = asyncio.get_running_loop()
    interval = seconds / max(1, len(plan))
    posts: dict[int, Message] = {}
    sent: list[Sent] = []
    max_lag = 0.0
    started = loop.time()
    for index, planned in enumerate(plan):
        due = started + index * interval
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        max_lag = max(max_lag, loop.time() - due)
        channel = cast.channels[planned.channel]
        at = time.monotonic()
        if planned.kind == "post":
            message = await server.say(channel, cast.seekers[planned.author], planned.text)
            posts[planned.conversation] = message
        else:
            responder = cast.responders[planned.author]
            message = await server.say(channel, responder, planned.text, reply_to=posts[planned.conversation])
        sent.append(Sent(message, planned, at, warmup=warmup))
    return sent, max_lag


async def _drain(
    server: DiscordServer,
    progress: Callable[[], Awaitable[tuple[int, int]]],
    total: int,
    timeout: float,  # noqa: ASYNC109
) -> tuple[bool, float]:
    """Until all ``total`` offered messages have their answer from the models, nothing is in flight and the bot is quiet.

    ``progress()`` says (messages answered, inference requests in flight). Returns (drained, seconds). Gives up
    early when nothing has moved for ``STALL_S`` (a message the bot dropped before asking the models would
    otherwise hold the drain to its timeout).
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    answered, moved_at = -1, started
    while loop.time() - started < timeout:
        now_answered, in_flight = await progress()
        if now_answered != answered or in_flight:
            answered, moved_at = now_answered, loop.time()
        quiet = not server.requests.all or time.monotonic() - server.requests.all[-1].at > QUIET_S
        if quiet and in_flight == 0:
            if answered == total:
                return True, loop.time() - started
            if loop.time() - moved_at > STALL_S:
                break
        await asyncio.sleep(0.25)
    return False, loop.time() - started


def metered_progress(
    inference: MeteredInference, sent: list[Sent]
) -> Callable[[], Awaitable[tuple[int, int]]]:
    """``_drain``'s progress read from the meter around this process's inference client."""
    meter = inference.meter

    async def progress() -> tuple[int, int]:
        return sum(1 for s in sent if meter.answered(s.message.id)), meter.in_flight

    return progress


async def _collect_outcomes(database: Database, report: LoadReport, sent: list[Sent]) -> None:
    """Each offered message's single outcome in the inbox (``message_inbox``)."""
    ids = [s.message.id for s in sent]
    report.messages_checked = len(ids)
    async with database.session() as session:
        rows = {
            row.message_id: row
            for chunk in _chunks(ids, 500)
            for row in await session.scalars(select(InboxMessage).where(InboxMessage.message_id.in_(chunk)))
        }
    outcome = Counter(InboxOutcome(row.outcome).value for row in rows.values())
    report.outcomes = dict(outcome)
    report.skip_reasons = dict(Counter(row.skip_reason for row in rows.values() if row.skip_reason))
    report.messages_without_outcome = [i for i in ids if i not in rows]
    report.messages_pending = [i for i, r in rows.items() if InboxOutcome(r.outcome) is InboxOutcome.PENDING]
    report.skipped_without_reason = [
        i for i, r in rows.items() if InboxOutcome(r.outcome) is InboxOutcome.SKIPPED and not r.skip_reason
    ]


def _chunks(values: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


async def _collect_stored(
    database: Database, report: LoadReport, sent: list[Sent]
) -> dict[int, tuple[int, tuple[int, int]]]:
    """Stored replies and post tiers; returns escalation id -> (the post that opened it, (guild, member))."""
    crisis_ids = {s.message.id for s in sent if s.planned.crisis}
    async with database.session() as session:
        statuses = await session.scalars(select(ScoredReply.coaching_status))
        report.coaching_status = dict(Counter(statuses))
        report.replies_stored = sum(report.coaching_status.values())
        high = set(
            await session.scalars(
                select(RiskAssessment.message_id).where(
                    RiskAssessment.source == "post", RiskAssessment.tier == "high"
                )
            )
        )
        escalations = {
            row.id: (row.message_id, (row.guild_id, row.member_id))
            for row in await session.scalars(select(Escalation))
        }
    report.high_risk_posts = len(high)
    report.crisis_posts_high = len(crisis_ids & high)
    report.high_risk_posts_alert_count = {post: 0 for post in high | crisis_ids}
    authors = {s.message.id: _member_of(s.message) for s in sent if s.planned.kind == "post"}
    report.high_risk_members_alert_count = {authors[post]: 0 for post in high | crisis_ids if post in authors}
    return escalations


def _member_of(message: Message) -> tuple[int, int]:
    """The (guild, member) a post's case belongs to: one open case per member per guild."""
    return int(message.guild_id or 0), message.author.id


def _collect_alerts(
    server: DiscordServer,
    report: LoadReport,
    escalations: dict[int, tuple[int, tuple[int, int]]],
    alert_channels: list[Channel] | None = None,
) -> None:
    """Alerts in #mod-alerts (each guild's, default the cast's; re-ping reminders carry no footer), per post that
    opened a case and per member."""
    alert_messages = [m for c in alert_channels or [server.cast.mod_alerts] for m in server.sent_to(c)]
    for message in alert_messages:
        for embed in message.embeds:
            found = _ALERT_ID.search(((embed.get("footer") or {}).get("text")) or "")
            if found is None:
                continue
            report.alerts_posted += 1
            case = escalations.get(int(found.group(1)))
            if case is not None:
                post, member = case
                report.high_risk_posts_alert_count[post] = report.high_risk_posts_alert_count.get(post, 0) + 1
                counts = report.high_risk_members_alert_count
                counts[member] = counts.get(member, 0) + 1


def _collect_dms(server: DiscordServer, report: LoadReport, sent: list[Sent]) -> None:
    """Coaching DMs as the server received them; each quotes its replies' jump URLs."""
    dm_channels = {str(channel.id) for channel in server.world.dm_channels.values()}
    reply_ids = {s.message.id for s in sent if s.planned.kind == "reply"}
    sent_at = {s.message.id: s.at for s in sent if s.planned.kind == "reply" and not s.warmup}
    dms_per_reply: Counter[int] = Counter()
    latencies = []
    for request in server.requests.find(method="POST", route="/channels/{channel_id}/messages"):
        if request.params.get("channel_id") not in dm_channels or request.status != 200:
            continue
        body = request.json if isinstance(request.json, dict) else {}  # a multipart body's payload_json too
        # Only offered replies count: a link to anything else (a post, a channel) is not a coached reply.
        replies = {int(m) for m in _JUMP_URL.findall(str(body.get("content") or ""))} & reply_ids
        if not replies:
            continue
        report.coaching_dms += 1
        for reply in replies:
            dms_per_reply[reply] += 1
            if reply in sent_at and dms_per_reply[reply] == 1:
                latencies.append(request.at - sent_at[reply])
    report.replies_with_dm = len(dms_per_reply)
    report.replies_in_several_dms = sorted(r for r, n in dms_per_reply.items() if n > 1)
    if latencies:
        report.dm_latency_p50_s = statistics.median(latencies)
        report.dm_latency_p99_s = percentile(latencies, 0.99)
        report.dm_latency_max_s = max(latencies)


def _machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{cores} CPU cores, load average {load}, CPU only, torch threads default"


async def run_load(
    options: LoadOptions,
    *,
    work_dir: Path | None = None,
    on_server_started: Callable[[DiscordServer], None] | None = None,
) -> LoadReport:
    """One whole run: start the server and the bot, set up, warm up, offer, drain, collect, shut down.

    ``on_server_started`` sees the loopback server before the bot connects (a test's log checker uses it).
    """
    report = LoadReport(
        options=dataclasses.asdict(options),
        machine=_machine(),
        started_utc=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    )
    with contextlib.ExitStack() as stack:
        folder = work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="peercare-load-")))
        database_url = f"sqlite+aiosqlite:///{folder / 'peercare.db'}"
        await upgrade_database_async(database_url)
        server = await DiscordServer().start()
        if on_server_started is not None:
            on_server_started(server)
        try:
            with _discord_pointed_at(server), _errors_watched() as errors:
                await _run(server, database_url, options, report)
            report.errors_logged = errors.lines
            report.unhandled_requests = [repr(r) for r in server.requests.unhandled()]
        finally:
            await server.stop()
    return report


async def _run(server: DiscordServer, database_url: str, options: LoadOptions, report: LoadReport) -> None:
    cast = _add_people_and_places(server, options)
    token = server.new_token()
    settings = Settings(
        discord_token=token,
        database_url=database_url,
        dev_guild_id=None,
        inference_backend="worker",
        inference_cpu_threads=options.worker_threads,
        log_level="INFO",
    )
    inference = MeteredInference(create_inference_client(inference_config_from_settings(settings)))
    bot = create_bot(settings, inference=inference, extensions=extension_names(), guild_ready_timeout=0.05)
    running = asyncio.create_task(bot.start(token), name="peercare-bot")
    samples = _Samples(inference)
    sampler = asyncio.create_task(samples.run(), name="load-samples")
    try:
        await asyncio.wait_for(bot.wait_until_ready(), BOT_READY_TIMEOUT_S)
        report.bot_rss_start_mb = samples.rss()[0]
        await _set_up_as_moderators_would(
            server,
            cast.channels,
            cast.responders,
            moderator=server.cast.moderator,
            alert_channel=server.cast.mod_alerts,
            moderator_role=server.cast.moderator_role,
        )
        await inference.wait_ready(MODELS_READY_TIMEOUT_S)
        await _warm_up_and_offer(bot, server, cast, inference, samples, options, report)
    finally:
        sampler.cancel()
        await bot.close()
        with contextlib.suppress(asyncio.CancelledError, discord.ConnectionClosed):
            await running
    report.bot_rss_peak_mb = max(samples.bot_rss)
    report.bot_rss_end_mb = samples.bot_rss[-1]
    report.worker_rss_peak_mb = max((x for x in samples.worker_rss if x == x), default=float("nan"))
    report.worker_rss_end_mb = next((x for x in reversed(samples.worker_rss) if x == x), float("nan"))


async def _warm_up_and_offer(
    bot: PeerCareBot,
    server: DiscordServer,
    cast: _Cast,
    inference: MeteredInference,
    samples: _Samples,
    options: LoadOptions,
    report: LoadReport,
) -> None:
    total_replies = round(options.rate * options.seconds)
    # The warm-up talks in the same server as the measured offer: its channels, seekers and responders.
    in_this_server = functools.partial(
        plan_traffic, channels=options.channels, seekers=options.seekers, responders=options.responders
    )
    plan = in_this_server(total_replies, crisis_every=options.crisis_every, seed=options.seed)
    warm_plan = in_this_server(options.warmup_conversations, crisis_every=0, seed=options.seed + 1)
    # Warm-up: the first batches (one-off allocations) and the first DMs, then the memory baseline.
    warm, _ = await _offer(server, cast, warm_plan, 1.0, warmup=True)
    await _drain(server, metered_progress(inference, warm), len(warm), options.drain_s)
    report.bot_rss_baseline_mb, report.worker_rss_baseline_mb = samples.rss()

    probe = _SlashProbe(server, [server.cast.carol, server.cast.owner], options.slash_every_s)
    prober = asyncio.create_task(probe.run(), name="load-slash-probe")
    samples.recording_depth = samples.recording_offered = True
    meter = inference.meter
    scored_before = len(meter.replies_scored)
    offered_from = time.monotonic()
    try:
        sent, report.max_send_lag_s = await _offer(server, cast, plan, options.seconds)
        offered_until = time.monotonic()
    finally:
        prober.cancel()
    report.replies_scored_in_offered_phase = sum(
        1 for at in meter.replies_scored.values() if offered_from <= at <= offered_until
    )
    samples.recording_depth, samples.recording_offered = True, False
    report.drained, report.drain_seconds = await _drain(
        server, metered_progress(inference, warm + sent), len(warm + sent), options.drain_s
    )
    samples.recording_depth = False
    await probe.finish()

    _count_offered(report, sent, offered_until - offered_from)
    report.scored_replies_per_s = report.replies_scored_in_offered_phase / report.offered_seconds
    report.replies_scored = len(meter.replies_scored) - scored_before
    report.replies_shed = len(meter.replies_shed)
    report.reply_priorities = dict(meter.reply_priorities)
    report.inference_failures = dict(meter.failures)
    report.queue_depth_max = max(samples.depths, default=0)
    report.queue_depth_mean = statistics.fmean(samples.depths) if samples.depths else 0.0
    if samples.lags:
        report.loop_lag_p99_s = percentile(samples.lags, 0.99)
        report.loop_lag_max_s = max(samples.lags)
    report.bot_rss_peak_halves_mb = samples.peaks_by_half(0)
    report.worker_rss_peak_halves_mb = samples.peaks_by_half(1)
    probe.record(report)

    await _collect_outcomes(bot.database, report, warm + sent)
    escalations = await _collect_stored(bot.database, report, warm + sent)
    _collect_alerts(server, report, escalations)
    _collect_dms(server, report, warm + sent)


def _count_offered(report: LoadReport, sent: list[Sent], seconds: float) -> None:
    """What the offered phase sent and how fast: the same counts for one bot and for a fleet."""
    report.offered_seconds = seconds
    report.posts_offered = sum(1 for s in sent if s.planned.kind == "post")
    report.replies_offered = len(sent) - report.posts_offered
    report.crisis_posts_offered = sum(1 for s in sent if s.planned.crisis)
    report.offered_replies_per_s = report.replies_offered / seconds
    report.offered_messages_per_s = len(sent) / seconds


def load_arguments(description: str, defaults: Any) -> argparse.ArgumentParser:
    """The options every load run takes (``defaults``: its options class): how long, how fast, drain, seed, JSON."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seconds", type=float, default=defaults.seconds, help="length of the offered phase")
    parser.add_argument("--rate", type=float, default=defaults.rate, help="replies offered per second")
    parser.add_argument("--drain", type=float, default=defaults.drain_s, help="longest wait to drain, s")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--json", action="store_true", help="also print the report as one JSON line")
    return parser


def offer_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options ``load_arguments`` parsed, as keyword arguments of a run's options class."""
    return {"seconds": args.seconds, "rate": args.rate, "drain_s": args.drain, "seed": args.seed}


def run_from_command_line(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    run: Callable[[argparse.Namespace], Awaitable[LoadReport]],
) -> int:
    """Parse, run, print the report (and its JSON with --json); exit status 1 when a property broke."""
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    report = asyncio.run(run(args))
    print(report.describe())
    if args.json:
        print(json.dumps(report.to_json()))
    return 1 if report.problems() else 0


def main(argv: list[str] | None = None) -> int:
    parser = load_arguments(__doc__.splitlines()[0], LoadOptions)
    parser.add_argument("--channels", type=int, default=LoadOptions.channels)
    parser.add_argument("--responders", type=int, default=LoadOptions.responders)
    parser.add_argument(
        "--worker-threads", type=int, default=None, help="INFERENCE_CPU_THREADS (default: every core)"
    )

    def run(args: argparse.Namespace) -> Awaitable[LoadReport]:
        options = LoadOptions(
            **offer_options(args),
            channels=args.channels,
            responders=args.responders,
            worker_threads=args.worker_threads,
        )
        return run_load(options)

    return run_from_command_line(parser, argv, run)


if __name__ == "__main__":
    raise SystemExit(main())
