"""The default backend: a supervised worker process that owns the models; crashes and hangs are survived.

The client keeps every request until it has its answer. When the worker dies (or stops sending heartbeats,
or holds work but answers nothing for ``request_timeout_s``) it is killed and restarted, and every unanswered request is
sent again; requests are idempotent (identical requests share one answer), so nothing is lost or doubled.
A request whose worker died under it ``max_attempts`` times fails with InferenceUnavailable instead of
restarting forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from inference.backends import protocol
from inference.backends.inprocess import _expect
from inference.config import InferenceConfig
from inference.engine import WorkItem, WorkResult
from inference.errors import InferenceShutDown, InferenceUnavailable, RequestShed
from inference.futures import cancel_and_wait, settle
from inference.types import ReplyScore, ReplyScoreRequest, RiskScore, RiskScoreRequest

log = logging.getLogger(__name__)

# A worker that dies this many times in a row before it is ready is broken, not unlucky.
MAX_FAILED_STARTS = 3
_WATCH_INTERVAL_S = 0.2

# What the worker process starts with unless the operator's environment already sets it (docs/worker-memory.md).
# oneDNN caches up to 1 024 primitives, one per operation and input shape, and batches come in many shapes
# (1-32 replies x 1-64 tokens): measured, a 64-entry cache took a third off the worker's RSS growth at no
# measurable cost. (The rest of the growth is the heap's; the worker trims it every 8th batch: inference.memory.)
# oneDNN reads this when torch builds its first primitive, hence the environment.
WORKER_MEMORY_ENVIRONMENT: dict[str, str] = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64"}


def worker_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The worker's environment: ``base`` (default: this process's) plus WORKER_MEMORY_ENVIRONMENT where unset."""
    environment = dict(os.environ if base is None else base)
    for name, value in WORKER_MEMORY_ENVIRONMENT.items():
        environment.setdefault(name, value)
    return environment


async def start_worker_process(
    python: str, config: InferenceConfig, log_level: int
) -> asyncio.subprocess.Process:
    """Start ``python -m inference.worker_main`` and hand it its configuration (its first frame).

    The one way a worker is started, so that tests of the process start it as ``WorkerClient`` does. It loads
    its models, says READY and serves until its stdin closes (the bot is gone) or it is told to stop.
    """
    proc = await asyncio.create_subprocess_exec(
        python,
        "-m",
        "inference.worker_main",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=None,
        env=worker_environment(),
        # Its own session: a Ctrl-C to the bot must not kill the worker before the bot shuts it down.
        start_new_session=True,
        limit=protocol.MAX_FRAME_BYTES,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(protocol.encode(protocol.CONFIG, config=config, log_level=log_level))
    return proc


@dataclass
class _Pending:
    item: WorkItem
    future: asyncio.Future
    attempts: int = 0
    sent_at: float | None = None  # monotonic time it went to the current worker; None = not sent yet


@dataclass
class WorkerStats:
    starts: int = 0
    restarts: int = 0
    crashes: int = 0
    hangs: int = 0
    resubmitted: int = 0
    pids: list[int] = field(default_factory=list)


class WorkerClient:
    """InferenceClient for a separate local process (``python -m inference.worker_main``)."""

    def __init__(self, config: InferenceConfig, *, python: str | None = None) -> None:
        self.config = config
        self._python = python or sys.executable
        self._pending: dict[int, _Pending] = {}
        self._by_item: dict[WorkItem, int] = {}
        self._ids = itertools.count(1)
        self._proc: asyncio.subprocess.Process | None = None
        self._ready = asyncio.Event()
        self._supervisor: asyncio.Task | None = None
        self._fatal: InferenceUnavailable | None = None
        self._closing = False
        self.stats = WorkerStats()
        self.device: str | None = None

    # -- InferenceClient -------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        if self._supervisor is None:
            self._supervisor = asyncio.get_running_loop().create_task(
                self._supervise(), name="inference-worker"
            )

    async def close(self) -> None:
        self._closing = True
        await cancel_and_wait(self._supervisor)
        await self._stop_worker(graceful=True)
        self._fail_all(InferenceShutDown())

    async def score_reply(self, request: ReplyScoreRequest) -> ReplyScore:
        return _expect(await self._submit(request), ReplyScore)  # type: ignore[return-value]

    async def score_risk(self, request: RiskScoreRequest) -> RiskScore:
        return _expect(await self._submit(request), RiskScore)  # type: ignore[return-value]

    async def wait_ready(self) -> None:
        await self._ready.wait()

    # -- requests --------------------------------------------------------------------------------

    async def _submit(self, item: WorkItem) -> WorkResult:
        if self._fatal is not None:
            raise self._fatal
        if self._supervisor is None or self._closing:
            raise InferenceUnavailable("the inference client is not running (call start() first)")
        existing = self._by_item.get(item)
        if existing is not None:
            return await asyncio.shield(self._pending[existing].future)
        request_id = next(self._ids)
        pending = _Pending(item, asyncio.get_running_loop().create_future())
        self._pending[request_id] = pending
        self._by_item[item] = request_id
        if self.ready:
            self._send_request(request_id, pending)
        return await asyncio.shield(pending.future)

    def _send_request(self, request_id: int, pending: _Pending) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdin.is_closing():
            return  # sent after the next restart
        pending.sent_at = time.monotonic()
        proc.stdin.write(protocol.encode(protocol.SCORE, id=request_id, item=pending.item))

    def _answer(self, request_id: int, outcome: WorkResult | BaseException) -> None:
        pending = self._pending.pop(request_id, None)
        if pending is None:
            return  # answered already (a resubmitted request whose first answer got through)
        self._by_item.pop(pending.item, None)
        settle(pending.future, outcome)

    def _fail_all(self, error: InferenceUnavailable) -> None:
        for request_id in list(self._pending):
            self._answer(request_id, error)

    # -- supervision -----------------------------------------------------------------------------

    async def _supervise(self) -> None:
        failed_starts = 0
        while not self._closing:
            became_ready = await self._run_one_worker()
            if self._closing or self._fatal is not None:
                return
            failed_starts = 0 if became_ready else failed_starts + 1
            if failed_starts >= MAX_FAILED_STARTS:
                self._fatal = InferenceUnavailable(
                    f"the inference worker died {failed_starts} times while loading models; see its log"
                )
                log.error("%s", self._fatal)
                self._fail_all(self._fatal)
                return
            self._count_failed_attempts()
            self.stats.restarts += 1
            delay = min(0.5 * 2**failed_starts, 10.0) if failed_starts else 0.0
            log.warning(
                "restarting the inference worker%s; %d request(s) will be resent",
                f" in {delay:.1f}s" if delay else "",
                len(self._pending),
            )
            if delay:
                await asyncio.sleep(delay)

    def _count_failed_attempts(self) -> None:
        """Requests that were with the dead worker used up an attempt; too many and they fail, typed."""
        for request_id, pending in list(self._pending.items()):
            if pending.sent_at is None:
                continue
            pending.sent_at = None
            pending.attempts += 1
            if pending.attempts >= self.config.max_attempts:
                self._answer(
                    request_id,
                    InferenceUnavailable(
                        f"the inference worker failed {pending.attempts} times while scoring this request"
                    ),
                )
            else:
                self.stats.resubmitted += 1

    async def _run_one_worker(self) -> bool:
        """Start a worker and serve through it until it exits or hangs; returns whether it became ready."""
        self._ready.clear()
        proc = await start_worker_process(self._python, self.config, logging.getLogger().level)
        self._proc = proc
        self.stats.starts += 1
        self.stats.pids.append(proc.pid)
        log.info("inference worker started (pid %d); models loading, replies wait until ready", proc.pid)
        state = {"last_seen": time.monotonic(), "last_progress": time.monotonic(), "ready": False}
        reader = asyncio.get_running_loop().create_task(self._read(proc, state))
        watchdog = asyncio.get_running_loop().create_task(self._watch(state))
        try:
            done, _ = await asyncio.wait({reader, watchdog}, return_when=asyncio.FIRST_COMPLETED)
            if watchdog in done and watchdog.result():
                self.stats.hangs += 1
                log.error("inference worker (pid %d) %s; killing it", proc.pid, watchdog.result())
            elif reader in done and not self._closing and self._fatal is None:
                self.stats.crashes += 1
        finally:
            self._ready.clear()
            reader.cancel()
            watchdog.cancel()
            if not self._closing:
                await self._stop_worker(graceful=False)
        if proc.returncode is not None and not self._closing and self._fatal is None:
            log.error("inference worker (pid %d) exited with code %s", proc.pid, proc.returncode)
        return bool(state["ready"])

    async def _read(self, proc: asyncio.subprocess.Process, state: dict) -> None:
        assert proc.stdout is not None
        while True:
            frame = await protocol.read_frame(proc.stdout)
            if frame is None:
                return
            state["last_seen"] = time.monotonic()
            op = frame.get("op")
            if op == protocol.RESULT:
                state["last_progress"] = state["last_seen"]
                self._answer(frame["id"], frame["result"])
            elif op == protocol.ERROR:
                error = protocol.error_from_wire(frame["error"])
                # A shed request says only that the queue is full, not that the models are still scoring.
                if not isinstance(error, RequestShed):
                    state["last_progress"] = state["last_seen"]
                self._answer(frame["id"], error)
            elif op == protocol.PROGRESS:
                log.info("inference worker (pid %d): %s", proc.pid, frame["stage"])
            elif op == protocol.READY:
                state["ready"] = True
                self.device = frame["device"]
                log.info(
                    "inference worker (pid %d) ready on %s after %.1fs",
                    proc.pid,
                    frame["device"],
                    frame.get("load_s", 0.0),
                )
                self._ready.set()
                for request_id, pending in list(self._pending.items()):
                    self._send_request(request_id, pending)
            elif op == protocol.LOAD_FAILED:
                error = protocol.error_from_wire(frame["error"])
                self._fatal = InferenceUnavailable(f"inference models failed to load: {error}")
                log.error("%s", self._fatal)
                self._fail_all(self._fatal)
                return

    async def _watch(self, state: dict) -> str | None:
        """Returns why the worker counts as hung: no heartbeat, or work held with no answer for the timeout.

        Progress, not a request's age: under sustained overload a request may queue in a healthy worker for
        longer than ``request_timeout_s``, and killing that worker (reloading the models, resending all)
        would only deepen the backlog. A worker that keeps answering is working; one that holds work and
        answers nothing (a stuck batch) for ``request_timeout_s`` is hung.
        """
        while True:
            await asyncio.sleep(_WATCH_INTERVAL_S)
            now = time.monotonic()
            if now - state["last_seen"] > self.config.heartbeat_timeout_s:
                return f"sent no heartbeat for {now - state['last_seen']:.1f}s"
            if not any(p.sent_at is not None for p in self._pending.values()):
                state["last_progress"] = now  # idle: nothing to answer, so no lack of progress either
                continue
            # Work sent after the last answer started its own clock: an idle worker's old answer is no excuse.
            since = max(
                state["last_progress"],
                min(p.sent_at for p in self._pending.values() if p.sent_at is not None),
            )
            if now - since > self.config.request_timeout_s:
                return (
                    f"answered nothing for {now - since:.1f}s while holding "
                    f"{sum(p.sent_at is not None for p in self._pending.values())} request(s) "
                    f"(INFERENCE_TIMEOUT_S={self.config.request_timeout_s:g})"
                )

    async def _stop_worker(self, *, graceful: bool) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        if graceful and proc.stdin is not None and not proc.stdin.is_closing():
            with contextlib.suppress(Exception):
                proc.stdin.write(protocol.encode(protocol.SHUTDOWN))
                proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 5.0)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
