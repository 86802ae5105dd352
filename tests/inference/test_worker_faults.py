"""The worker backend survives its process dying or hanging: requests are resent, none is lost or doubled."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import pytest
import pytest_asyncio

from inference.backends import protocol
from inference.backends.worker import WorkerClient, start_worker_process
from inference.engine import ScoringEngine
from inference.errors import InputRejected
from inference.types import ReplyScore, ReplyScoreRequest, RiskScore, RiskScoreRequest

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

PARENTS = (
    "I haven't left my room in three days and I don't know why.",
    "My sister is in hospital and I can't focus on anything at work.",
    "I keep messing up at my new job and I think they'll fire me.",
)
REPLIES = (
    "That sounds exhausting. What do you think is keeping you in there?",
    "I'm sorry. Is there someone who could sit with you for a bit?",
    "ok",
    "I went through the same last winter; small steps helped me, like opening a window.",
)


def conversation(count: int, *, first_id: int) -> list[ReplyScoreRequest]:
    return [
        ReplyScoreRequest(
            first_id + i // 4,
            PARENTS[(i // 4) % len(PARENTS)],
            first_id + 100_000 + i,
            REPLIES[i % len(REPLIES)],
        )
        for i in range(count)
    ]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def worker(tiny_config):
    client = WorkerClient(tiny_config("worker", heartbeat_timeout_s=2.0, max_batch_size=4))
    await client.start()
    await client.wait_ready()
    yield client
    await client.close()


@pytest.fixture(scope="module")
def reference_engine(tiny_config) -> ScoringEngine:
    return ScoringEngine.load(tiny_config("inprocess"))


async def test_killing_the_worker_mid_batch_loses_no_request(worker, reference_engine):
    requests = conversation(120, first_id=1_000)
    tasks = [asyncio.create_task(worker.score_reply(r)) for r in requests]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    still_waiting = sum(not task.done() for task in tasks)
    first_pid, crashes = worker.pid, worker.stats.crashes
    os.kill(first_pid, signal.SIGKILL)
    scores = await asyncio.wait_for(asyncio.gather(*tasks), 120)
    assert still_waiting > 0  # the kill really hit requests in flight
    assert worker.stats.crashes == crashes + 1 and worker.pid != first_pid
    assert [s.reply_id for s in scores] == [r.reply_id for r in requests]
    for request, score in zip(requests[:8], scores[:8], strict=True):
        (expected,) = reference_engine.score_batch([request])
        assert score.empathy.emotional_reactions.level == expected.empathy.emotional_reactions.level


async def test_a_hung_worker_is_detected_and_restarted(worker):
    hung_pid, hangs = worker.pid, worker.stats.hangs
    os.kill(hung_pid, signal.SIGSTOP)  # alive but silent: no heartbeats, no answers
    score = await asyncio.wait_for(worker.score_risk(RiskScoreRequest(42, "are you still there?")), 120)
    assert isinstance(score, RiskScore)
    assert worker.stats.hangs == hangs + 1 and worker.pid != hung_pid


async def test_bad_inputs_never_kill_the_worker(worker):
    pid, crashes = worker.pid, worker.stats.crashes
    bad = ["", " ", "\u200b\u200c\u200d", "\ufeff\n\t"]
    for index, text in enumerate(bad):
        with pytest.raises(InputRejected):
            await worker.score_reply(ReplyScoreRequest(7, PARENTS[0], 70 + index, text))
    huge = "so tired of all of this " * 500
    assert isinstance(await worker.score_reply(ReplyScoreRequest(8, huge, 80, huge)), ReplyScore)
    assert worker.pid == pid and worker.stats.crashes == crashes


async def test_identical_requests_resent_share_one_answer(worker):
    request = conversation(1, first_id=5_000)[0]
    first, second = await asyncio.gather(worker.score_reply(request), worker.score_reply(request))
    assert first == second


async def test_closing_the_client_stops_the_worker_process(tiny_config):
    client = WorkerClient(tiny_config("worker"))
    await client.start()
    await client.wait_ready()
    pid = client.pid
    await client.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_the_worker_exits_when_its_pipe_from_the_bot_closes(tiny_config):
    proc = await start_worker_process(sys.executable, tiny_config("worker"), logging.WARNING)
    while (frame := await asyncio.wait_for(protocol.read_frame(proc.stdout), 60))["op"] != protocol.READY:
        assert frame["op"] in (protocol.PROGRESS, protocol.HEARTBEAT)
    proc.stdin.close()  # what the worker sees when the bot process dies
    assert await asyncio.wait_for(proc.wait(), 30) == 0
