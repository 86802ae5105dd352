"""The micro-batcher and length grouping, driven by a plain batch function (no models needed)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from inference.batching import AdmissionGate, MicroBatcher, plan_length_groups
from inference.config import InferenceConfig
from inference.errors import InferenceShutDown, InputRejected, RequestShed
from inference.types import Priority


class RecordingBatchFunction:
    """Doubles numbers, remembers each batch, and can be held mid-batch to fill the queue behind it."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()

    def __call__(self, items: list[int]) -> list[object]:
        self.batches.append(list(items))
        self.entered.set()
        self.release.wait(10)
        return [InputRejected(f"item {item} is negative") if item < 0 else item * 2 for item in items]


def make_batcher(fn, **overrides) -> MicroBatcher:
    options = {"max_batch_size": 4, "max_wait_s": 0.05, "queue_size": 8, "coaching_wait_s": 0.05}
    options.update(overrides)
    batcher = MicroBatcher(fn, **options)
    batcher.start()
    batcher.set_ready()
    return batcher


async def hold_first_batch(batcher: MicroBatcher, fn: RecordingBatchFunction) -> asyncio.Task:
    """Put one request in flight and keep its batch running, so later requests stay queued."""
    fn.release.clear()
    first = asyncio.create_task(batcher.submit(1000, priority=Priority.COACHING))
    await asyncio.to_thread(fn.entered.wait, 5)
    return first


async def test_concurrent_requests_are_grouped_up_to_the_batch_size():
    fn = RecordingBatchFunction()
    batcher = make_batcher(fn)
    results = await asyncio.gather(*(batcher.submit(i, priority=Priority.COACHING) for i in range(10)))
    await batcher.close()
    assert results == [i * 2 for i in range(10)]
    assert [len(batch) for batch in fn.batches] == [4, 4, 2]


async def test_a_lone_request_runs_after_the_maximum_wait():
    fn = RecordingBatchFunction()
    batcher = make_batcher(fn, max_wait_s=0.01)
    assert await asyncio.wait_for(batcher.submit(3, priority=Priority.COACHING), 2) == 6
    await batcher.close()


async def test_requests_wait_until_the_models_are_ready():
    fn = RecordingBatchFunction()
    batcher = MicroBatcher(fn, max_batch_size=4, max_wait_s=0.0, queue_size=8, coaching_wait_s=1)
    batcher.start()
    pending = asyncio.create_task(batcher.submit(5, priority=Priority.COACHING))
    await asyncio.sleep(0.05)
    assert not pending.done() and fn.batches == []
    batcher.set_ready()
    assert await pending == 10
    await batcher.close()


async def test_one_bad_item_gets_its_own_error_and_spoils_nothing():
    fn = RecordingBatchFunction()
    batcher = make_batcher(fn)
    outcomes = await asyncio.gather(
        *(batcher.submit(i, priority=Priority.COACHING) for i in (1, -1, 2)), return_exceptions=True
    )
    await batcher.close()
    assert outcomes[0] == 2 and outcomes[2] == 4
    assert isinstance(outcomes[1], InputRejected)


async def test_risk_work_is_taken_before_queued_coaching_work():
    fn = RecordingBatchFunction()
    batcher = make_batcher(fn, max_batch_size=2, max_wait_s=0.0)
    first = await hold_first_batch(batcher, fn)
    coaching = [asyncio.create_task(batcher.submit(i, priority=Priority.COACHING)) for i in (1, 2)]
    risk = [asyncio.create_task(batcher.submit(i, priority=Priority.RISK)) for i in (101, 102)]
    await asyncio.sleep(0.01)
    fn.release.set()
    await asyncio.gather(first, *coaching, *risk)
    await batcher.close()
    assert fn.batches[1] == [101, 102]


async def test_full_queue_sheds_coaching_work_with_a_reason():
    fn = RecordingBatchFunction()
    batcher = make_batcher(fn, queue_size=2, coaching_wait_s=0.05)
    first = await hold_first_batch(batcher, fn)
    queued = [asyncio.create_task(batcher.submit(i, priority=Priority.COACHING)) for i in (1, 2)]
    await asyncio.sleep(0)
    with pytest.raises(RequestShed, match="queue full") as shed:
        await batcher.submit(3, priority=Priority.COACHING)
    fn.release.set()
    await asyncio.gather(first, *queued)
    await batcher.close()
    assert "coaching request shed" in shed.value.reason
    assert batcher.stats.shed == 1


async def test_full_queue_never_sheds_risk_work():
    fn = RecordingBatchFunction()
    batcher = make_batcher(fn, queue_size=2, coaching_wait_s=0.0)
    first = await hold_first_batch(batcher, fn)
    queued = [asyncio.create_task(batcher.submit(i, priority=Priority.COACHING)) for i in (1, 2)]
    risk = [asyncio.create_task(batcher.submit(100 + i, priority=Priority.RISK)) for i in range(10)]
    await asyncio.sleep(0.02)
    fn.release.set()
    results = await asyncio.gather(first, *queued, *risk)
    await batcher.close()
    assert results[3:] == [2 * (100 + i) for i in range(10)]


async def test_coaching_work_waits_for_room_instead_of_being_shed_at_once():
    fn = RecordingBatchFunction()
    batcher = make_batcher(fn, queue_size=1, max_batch_size=1, max_wait_s=0.0, coaching_wait_s=5.0)
    first = await hold_first_batch(batcher, fn)
    queued = asyncio.create_task(batcher.submit(1, priority=Priority.COACHING))
    waiting = asyncio.create_task(batcher.submit(2, priority=Priority.COACHING))
    await asyncio.sleep(0.02)
    fn.release.set()
    assert await asyncio.gather(first, queued, waiting) == [2000, 2, 4]
    await batcher.close()


async def test_identical_requests_in_flight_share_one_result():
    fn = RecordingBatchFunction()
    batcher = make_batcher(fn)
    results = await asyncio.gather(*(batcher.submit(7, priority=Priority.COACHING) for _ in range(3)))
    await batcher.close()
    assert results == [14, 14, 14]
    assert sum(len(batch) for batch in fn.batches) == 1


async def test_a_failing_batch_function_answers_every_request_with_a_typed_error():
    def explode(items):
        raise RuntimeError("boom")

    batcher = make_batcher(explode)
    outcomes = await asyncio.gather(
        *(batcher.submit(i, priority=Priority.COACHING) for i in range(3)), return_exceptions=True
    )
    await batcher.close()
    assert all(type(o).__name__ == "InferenceError" and "RuntimeError" in str(o) for o in outcomes)


async def test_failure_before_ready_answers_waiting_requests():
    fn = RecordingBatchFunction()
    batcher = MicroBatcher(fn, max_batch_size=4, max_wait_s=0.0, queue_size=8, coaching_wait_s=1)
    batcher.start()
    pending = asyncio.create_task(batcher.submit(1, priority=Priority.RISK))
    await asyncio.sleep(0.01)
    batcher.fail(InputRejected("models failed"))
    with pytest.raises(InputRejected):
        await pending
    await batcher.close()


async def test_closing_answers_requests_whose_batch_is_still_running():
    fn = RecordingBatchFunction()
    batcher = make_batcher(fn)
    running = await hold_first_batch(batcher, fn)
    await batcher.close()
    fn.release.set()
    with pytest.raises(InferenceShutDown):
        await asyncio.wait_for(running, 2)


async def test_a_request_after_close_is_told_the_backend_shut_down():
    batcher = make_batcher(RecordingBatchFunction())
    await batcher.close()
    with pytest.raises(InferenceShutDown):
        await batcher.submit(1, priority=Priority.RISK)


async def test_a_batcher_from_the_config_waits_its_milliseconds_as_seconds():
    config = InferenceConfig(max_batch_size=7, max_wait_ms=25.0, queue_size=11, coaching_wait_s=0.5)
    batcher = MicroBatcher.from_config(RecordingBatchFunction(), config, name="test")
    await batcher.close()
    assert batcher.max_wait_s == 0.025
    assert (batcher.max_batch_size, batcher.queue_size, batcher.coaching_wait_s) == (7, 11, 0.5)


async def test_admission_gate_sheds_coaching_but_admits_risk_past_its_limit():
    gate = AdmissionGate(1, coaching_wait_s=0.01)
    async with gate.admit(Priority.COACHING):
        async with gate.admit(Priority.RISK):
            assert gate.in_flight == 2
        with pytest.raises(RequestShed):
            async with gate.admit(Priority.COACHING):
                pass
    assert gate.in_flight == 0 and gate.shed == 1


def test_length_groups_keep_short_texts_apart_from_long_ones():
    lengths = [8] * 10 + [64] * 10
    groups = plan_length_groups(lengths, call_overhead_tokens=16)
    assert sorted(sorted(g) for g in groups) == [list(range(10)), list(range(10, 20))]


def test_length_groups_do_not_split_when_lengths_are_alike():
    assert len(plan_length_groups([30, 31, 32, 29, 30], call_overhead_tokens=16)) == 1


def test_length_groups_cover_every_index_once_and_respect_the_group_cap():
    lengths = [(i * 37) % 64 + 1 for i in range(100)]
    groups = plan_length_groups(lengths, max_group=16)
    assert sorted(i for g in groups for i in g) == list(range(100))
    assert max(len(g) for g in groups) <= 16
