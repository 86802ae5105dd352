"""Load generators for the benchmark: saturating (closed loop) throughput and a steady offered load."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Score = Callable[[Any], Awaitable[Any]]


@dataclass
class Throughput:
    replies: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.replies / self.seconds if self.seconds else 0.0


@dataclass
class Latency:
    offered_per_s: float
    p50_ms: float
    p99_ms: float
    achieved_per_s: float


def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


async def saturate(score: Score, requests: Sequence[Any], *, concurrency: int) -> Throughput:
    """Keep ``concurrency`` requests in flight until all are done: the most the scorer can do."""
    queue: asyncio.Queue = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)

    async def client() -> None:
        while not queue.empty():
            await score(queue.get_nowait())

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return Throughput(len(requests), time.perf_counter() - started)


async def steady_load(score: Score, requests: Sequence[Any], *, rate_per_s: float) -> Latency:
    """Offer requests at a constant rate (open loop) and time each from its arrival to its answer."""
    latencies: list[float] = []
    started = time.perf_counter()

    async def one(request: Any, arrival: float) -> None:
        delay = arrival - (time.perf_counter() - started)
        if delay > 0:
            await asyncio.sleep(delay)
        sent = started + arrival
        await score(request)
        latencies.append((time.perf_counter() - sent) * 1000)

    await asyncio.gather(*(one(request, i / rate_per_s) for i, request in enumerate(requests)))
    elapsed = time.perf_counter() - started
    return Latency(
        offered_per_s=rate_per_s,
        p50_ms=statistics.median(latencies),
        p99_ms=percentile(latencies, 0.99),
        achieved_per_s=len(requests) / elapsed,
    )


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds used so far by process ``pid`` (None: this process)."""
    if pid is None:
        return time.process_time()
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def peak_rss_mb(pid: int | str = "self") -> float:
    """The process's high-water resident memory (VmHWM), in MiB; NaN where /proc is missing."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")
