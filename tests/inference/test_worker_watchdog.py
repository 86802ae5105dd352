"""The hang watchdog judges progress, not queue wait: a slow worker that keeps answering is never killed."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from inference.backends.worker import WorkerClient
from inference.errors import InferenceUnavailable
from inference.types import ReplyScoreRequest

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]

# The real worker process with the real tiny models; only each batch is made slower after the models load
# (warm-up included would slow start-up too), as a busy CPU makes it.
SLOW_WORKER = """#!{python}
import time

from inference import engine, worker_main

_load = engine.ScoringEngine.load.__func__


def load(cls, config, **options):
    loaded = _load(cls, config, **options)
    score_batch = loaded.score_batch

    def slow_score_batch(items):
        time.sleep({delay_s})
        return score_batch(items)

    loaded.score_batch = slow_score_batch
    return loaded


engine.ScoringEngine.load = classmethod(load)
worker_main.main()
"""


def slow_worker(folder: Path, delay_s: float) -> str:
    """An executable that WorkerClient starts instead of ``python`` (it ignores ``-m inference.worker_main``)."""
    script = folder / "slow_worker.py"
    script.write_text(SLOW_WORKER.format(python=sys.executable, delay_s=delay_s))
    script.chmod(0o755)
    return str(script)


def requests(count: int) -> list[ReplyScoreRequest]:
    return [
        ReplyScoreRequest(
            1 + i // 4, "I can't sleep and work is piling up.", 1_000 + i, f"That sounds hard {i}."
        )
        for i in range(count)
    ]


async def test_a_slow_worker_that_keeps_answering_is_not_killed_however_deep_its_queue(
    tiny_config, tmp_path: Path
) -> None:
    # 12 batches of 4 at 0.5 s each: the last request waits 6 s in the queue, three times the timeout.
    config = tiny_config("worker", max_batch_size=4, max_wait_ms=0.0, request_timeout_s=2.0)
    client = WorkerClient(config, python=slow_worker(tmp_path, delay_s=0.5))
    await client.start()
    try:
        await client.wait_ready()
        pid = client.pid
        scores = await asyncio.wait_for(asyncio.gather(*(client.score_reply(r) for r in requests(48))), 120)
        assert len(scores) == 48
        assert (client.stats.hangs, client.stats.restarts, client.pid) == (0, 0, pid)
    finally:
        await client.close()


async def test_a_worker_holding_work_that_answers_nothing_is_killed_as_hung(
    tiny_config, tmp_path: Path
) -> None:
    # Heartbeats keep coming (the event loop is fine); the batch itself never ends.
    config = tiny_config("worker", request_timeout_s=1.0, max_attempts=1)
    client = WorkerClient(config, python=slow_worker(tmp_path, delay_s=3600))
    await client.start()
    try:
        await client.wait_ready()
        pid = client.pid
        with pytest.raises(InferenceUnavailable):
            await asyncio.wait_for(client.score_reply(requests(1)[0]), 60)
        assert client.stats.hangs == 1
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # the hung worker was killed (and reaped)
    finally:
        await client.close()
