"""Hands memory freed after a batch back to the system, so the worker's RSS stays bounded (docs/worker-memory.md).

Each batch allocates activations of its own shape (1-32 replies x 1-64 tokens). glibc serves them from heap
arenas once its mmap threshold has risen past them, and the freed holes between live blocks stay resident:
measured, the worker's RSS grew ~1.2 GB in 3 000 replies and was still rising. ``malloc_trim(0)`` returns every
free page in every arena (glibc >= 2.8 releases the middle of the heap too, not only its top). After every
batch it cost ~10% CPU; after every 8th ~4%, within run-to-run noise, for a slightly higher bound. A low mmap
threshold also bounds the growth but cost far more CPU (60-70 ms/reply against 36-40; bench/worker_memory.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

# Batches between trims: every batch cost ~10% CPU, every 8th ~4%, within noise (docs/worker-memory.md).
TRIM_EVERY_BATCHES = 8


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        log.info("this C library has no malloc_trim; freed memory is left to the allocator")
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Return free heap pages to the system; True if any were released, False if none (or no glibc)."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


class HeapTrimmer:
    """Counts scored batches and releases freed memory after every ``every``-th one."""

    def __init__(
        self, every: int = TRIM_EVERY_BATCHES, release: Callable[[], bool] = release_freed_memory
    ) -> None:
        self.every = max(1, every)
        self._release = release
        self.batches = 0
        self.trims = 0

    def batch_done(self) -> None:
        self.batches += 1
        if self.batches % self.every == 0:
            self._release()
            self.trims += 1
