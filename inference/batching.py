"""Dynamic micro-batching with a bounded, prioritised queue, and grouping of texts by length."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from inference.errors import InferenceError, InferenceShutDown, RequestShed
from inference.futures import cancel_and_wait, settle
from inference.types import Priority

if TYPE_CHECKING:
    from inference.config import InferenceConfig

log = logging.getLogger(__name__)

Item = TypeVar("Item", bound=Hashable)
Result = TypeVar("Result")

# What a batch function returns per item: a result, or the typed error for that item alone.
BatchFunction = Callable[[list[Item]], Sequence["Result | BaseException"]]


@dataclass
class BatcherStats:
    batches: int = 0
    items: int = 0
    shed: int = 0
    coalesced: int = 0
    largest_batch: int = 0


class _ShedCounter(Protocol):
    shed: int


async def _wait_for_room(
    priority: Priority,
    room: asyncio.Condition,
    has_room: Callable[[], bool],
    *,
    coaching_wait_s: float,
    full: Callable[[], str],
    counter: _ShedCounter,
) -> None:
    """Risk work always goes in; coaching work waits for room up to ``coaching_wait_s``, then is shed.

    Raises RequestShed, its message ``full()`` (what is full) plus how long it waited; ``counter.shed`` counts it.
    Whoever makes room notifies ``room``.
    """
    if priority is Priority.RISK or has_room():
        return
    async with room:
        try:
            await asyncio.wait_for(room.wait_for(has_room), coaching_wait_s)
        except TimeoutError:
            counter.shed += 1
            raise RequestShed(f"{full()} for {coaching_wait_s:g}s: coaching request shed") from None


@dataclass
class _Entry(Generic[Item]):
    item: Item
    future: asyncio.Future
    enqueued_at: float


class MicroBatcher(Generic[Item, Result]):
    """Gathers requests for up to ``max_wait_s`` (or until ``max_batch_size``) and runs them as one batch.

    Batches run one at a time on a single worker thread, so the event loop never runs a model and
    requests that arrive while a batch runs form the next batch. Risk work is taken first and always
    admitted; coaching work waits for room in the queue for up to ``coaching_wait_s`` and is then shed
    with :class:`RequestShed`. Identical requests in flight share one result (idempotent resubmission).
    Nothing runs until :meth:`set_ready` is called: requests made while models load simply wait.
    """

    def __init__(
        self,
        run_batch: BatchFunction,
        *,
        max_batch_size: int,
        max_wait_s: float,
        queue_size: int,
        coaching_wait_s: float,
        executor: Executor | None = None,
        name: str = "inference",
    ) -> None:
        self._run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.queue_size = queue_size
        self.coaching_wait_s = coaching_wait_s
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-batch")
        self._name = name
        self._risk: deque[_Entry] = deque()
        self._coaching: deque[_Entry] = deque()
        self._by_item: dict[Item, asyncio.Future] = {}
        self._running: list[_Entry] = []
        self._ready = asyncio.Event()
        self._work = asyncio.Event()
        self._full = asyncio.Event()
        self._room = asyncio.Condition()
        self._task: asyncio.Task | None = None
        self._closed = False
        self._failure: BaseException | None = None
        self.stats = BatcherStats()

    @classmethod
    def from_config(
        cls, run_batch: BatchFunction, config: InferenceConfig, *, name: str
    ) -> MicroBatcher[Item, Result]:
        """A batcher sized by the inference configuration (whose wait is in milliseconds, as operators set it)."""
        return cls(
            run_batch,
            max_batch_size=config.max_batch_size,
            max_wait_s=config.max_wait_ms / 1000,
            queue_size=config.queue_size,
            coaching_wait_s=config.coaching_wait_s,
            name=name,
        )

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._collect(), name=f"{self._name}-batcher")

    def set_ready(self) -> None:
        self._ready.set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def fail(self, error: BaseException) -> None:
        """The models will never be ready (e.g. they failed to load): fail everything waiting and future calls."""
        self._failure = error
        for entry in [*self._risk, *self._coaching, *self._running]:
            settle(entry.future, error)
        self._risk.clear()
        self._coaching.clear()
        self._running = []
        self._by_item.clear()

    async def close(self) -> None:
        self._closed = True
        await cancel_and_wait(self._task)
        self.fail(InferenceShutDown())
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def queued(self) -> int:
        return len(self._risk) + len(self._coaching)

    # -- submitting ------------------------------------------------------------------------------

    async def submit(self, item: Item, *, priority: Priority) -> Result:
        """Queue ``item`` and wait for its result; raises the item's typed error, or RequestShed."""
        if self._failure is not None:
            raise self._failure
        if self._closed:
            raise InferenceShutDown()
        existing = self._by_item.get(item)
        if existing is None:
            await _wait_for_room(
                priority,
                self._room,
                lambda: self.queued < self.queue_size,
                coaching_wait_s=self.coaching_wait_s,
                full=lambda: (
                    f"inference queue full ({self.queued} requests waiting, limit {self.queue_size})"
                ),
                counter=self.stats,
            )
            # An identical request may have been queued while this one waited for room.
            existing = self._by_item.get(item)
        if existing is not None:
            self.stats.coalesced += 1
            return await asyncio.shield(existing)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        entry = _Entry(item, future, loop.time())
        (self._risk if priority is Priority.RISK else self._coaching).append(entry)
        self._by_item[item] = future
        self._work.set()
        if self.queued >= self.max_batch_size:
            self._full.set()
        # Shielded: a caller that gives up must not cancel the result other callers share.
        return await asyncio.shield(future)

    # -- the batching loop -----------------------------------------------------------------------

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._ready.wait()
            while not self.queued:
                self._work.clear()
                await self._work.wait()
            if self.queued < self.max_batch_size and self.max_wait_s > 0:
                self._full.clear()
                remaining = self._oldest_enqueued_at() + self.max_wait_s - loop.time()
                if remaining > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), remaining)
            batch = self._take(self.max_batch_size)
            async with self._room:
                self._room.notify_all()
            if not batch:
                continue
            await self._run(loop, batch)

    def _oldest_enqueued_at(self) -> float:
        heads = [queue[0].enqueued_at for queue in (self._risk, self._coaching) if queue]
        return min(heads) if heads else time.monotonic()

    def _take(self, limit: int) -> list[_Entry]:
        batch: list[_Entry] = []
        for queue in (self._risk, self._coaching):
            while queue and len(batch) < limit:
                batch.append(queue.popleft())
        return batch

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Entry]) -> None:
        items = [entry.item for entry in batch]
        self._running = batch
        self.stats.batches += 1
        self.stats.items += len(items)
        self.stats.largest_batch = max(self.stats.largest_batch, len(items))
        try:
            results = await loop.run_in_executor(self._executor, self._run_batch, items)
            if len(results) != len(items):
                raise InferenceError(f"batch function returned {len(results)} results for {len(items)} items")
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a whole-batch failure answers every request in it, typed
            log.error("inference batch of %d failed: %s", len(items), type(exc).__name__)
            error = (
                exc
                if isinstance(exc, InferenceError)
                else InferenceError(f"scoring failed: {type(exc).__name__}")
            )
            results = [error] * len(items)
        self._running = []
        for entry, result in zip(batch, results, strict=True):
            self._by_item.pop(entry.item, None)
            settle(entry.future, result)


class AdmissionGate:
    """Bounds the requests a client has in flight: risk always enters; coaching waits, then is shed.

    For backends whose queue lives elsewhere (Ray Serve's replicas batch themselves).
    """

    def __init__(self, limit: int, *, coaching_wait_s: float) -> None:
        self.limit = limit
        self.coaching_wait_s = coaching_wait_s
        self.in_flight = 0
        self.shed = 0
        self._room = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def admit(self, priority: Priority):
        await _wait_for_room(
            priority,
            self._room,
            lambda: self.in_flight < self.limit,
            coaching_wait_s=self.coaching_wait_s,
            full=lambda: f"{self.in_flight} inference requests in flight (limit {self.limit})",
            counter=self,
        )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            async with self._room:
                self._room.notify(1)


# -- grouping texts by length ---------------------------------------------------------------------


def plan_length_groups(
    lengths: Sequence[int], *, max_group: int = 64, call_overhead_tokens: int = 48
) -> list[list[int]]:
    """Split item indices into groups so that padding each group to its longest member wastes little.

    Models pad a batch to its longest text; one long reply would make every short one in its batch pay for
    it. Sorting by length and cutting where it pays (an exact dynamic programme over the sorted lengths,
    charging each extra model call ``call_overhead_tokens``) pads to a few natural buckets instead of 64.
    """
    if not lengths:
        return []
    order = sorted(range(len(lengths)), key=lambda index: lengths[index])
    sorted_lengths = [max(1, lengths[index]) for index in order]
    count = len(order)
    best = [0.0] + [float("inf")] * count
    cut = [0] * (count + 1)
    for end in range(1, count + 1):
        for start in range(max(0, end - max_group), end):
            # Sorted ascending, so the group's padded length is its last member's.
            cost = best[start] + call_overhead_tokens + (end - start) * sorted_lengths[end - 1]
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups: list[list[int]] = []
    end = count
    while end > 0:
        start = cut[end]
        groups.append(order[start:end])
        end = start
    groups.reverse()
    return groups
