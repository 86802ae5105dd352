"""The worker keeps its memory bounded: it trims the heap every few batches and starts with a small oneDNN cache.

Whether that bounds the RSS is measured in ``bench/worker_memory.py`` (docs/worker-memory.md), not here.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import pytest

from inference.backends.worker import WORKER_MEMORY_ENVIRONMENT, WorkerClient, worker_environment
from inference.engine import ScoringEngine
from inference.memory import HeapTrimmer, release_freed_memory
from inference.types import ReplyScoreRequest

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc are Linux's")


def process_environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.decode().split("=", 1) for entry in raw.split(b"\0") if b"=" in entry)


@linux_only
def test_freed_heap_memory_is_handed_back_to_the_system():
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(64 * 1024) for _ in range(256)]  # 16 MiB of heap blocks, below any mmap threshold
    for block in blocks:
        ctypes.memset(block, 1, 64 * 1024)
    for block in blocks[:-1]:  # the last one stays, so the freed space is a hole, not the heap's top
        libc.free(block)
    try:
        assert release_freed_memory() is True
    finally:
        libc.free(blocks[-1])


def test_the_worker_trims_the_heap_after_every_eighth_batch(tiny_config):
    from inference.worker_main import score_then_trim

    engine = ScoringEngine.load(tiny_config("inprocess"))
    trims: list[int] = []
    trimmer = HeapTrimmer(8, release=lambda: trims.append(trimmer.batches) or True)
    request = ReplyScoreRequest(1, "I can't sleep at all lately.", 2, "That sounds exhausting.")
    expected = engine.score_batch([request])
    scored = [score_then_trim(engine, [request], trimmer) for _ in range(17)]
    assert trims == [8, 16]
    assert scored[0] == expected


def test_a_failed_batch_still_counts_towards_the_next_trim():
    from inference.worker_main import score_then_trim

    class FailingEngine:
        def score_batch(self, items):
            raise RuntimeError("boom")

    trimmer = HeapTrimmer(1, release=lambda: True)
    with pytest.raises(RuntimeError):
        score_then_trim(FailingEngine(), [], trimmer)
    assert trimmer.trims == 1


@pytest.mark.slow
@linux_only
async def test_the_worker_process_starts_with_a_small_onednn_cache(tiny_config, monkeypatch):
    for name in WORKER_MEMORY_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    client = WorkerClient(tiny_config("worker"))
    await client.start()
    try:
        await client.wait_ready()
        environment = process_environment(client.pid)
    finally:
        await client.close()
    for name, value in WORKER_MEMORY_ENVIRONMENT.items():
        assert environment.get(name) == value


def test_an_operators_own_onednn_setting_wins(monkeypatch):
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "256")
    assert worker_environment()["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "256"


def test_the_worker_keeps_the_rest_of_the_bots_environment():
    assert worker_environment({"PATH": "/usr/bin"})["PATH"] == "/usr/bin"
