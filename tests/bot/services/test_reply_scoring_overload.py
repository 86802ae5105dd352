"""Under overload the reply pipeline stays bounded: replies to a post already being risk-scored are sheddable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.db.session import Database
from bot.services.reply_scoring import ReplyInput, ReplyOutcome, ReplyScoringPipeline
from bot.services.seeker_risk import SeekerPost
from inference.backends.inprocess import InProcessClient
from inference.config import InferenceConfig
from inference.errors import RequestShed
from inference.types import (
    Mechanism,
    Priority,
    ReplyScore,
    ReplyScoreRequest,
    RiskScore,
    RiskScoreRequest,
    RiskTier,
)
from tests.bot.services.responder_fixtures import ScriptedInference

GUILD, CHANNEL, SEEKER = 1, 2, 3
POST = SeekerPost(GUILD, CHANNEL, 500, SEEKER, "I can't do this anymore, I have a plan for tonight.")


def _reply(message_id: int, responder_id: int = 4) -> ReplyInput:
    return ReplyInput(GUILD, CHANNEL, message_id, responder_id, "I'm here with you. Can we talk now?", POST)


class HeldRiskInference(ScriptedInference):
    """Scripted answers, but a post's risk request stays in flight until the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.release_risk = asyncio.Event()

    async def score_risk(self, request: RiskScoreRequest) -> RiskScore:
        self.risk_calls.append(request)
        await self.release_risk.wait()
        return RiskScore(message_id=request.message_id, risk=self._risk())


async def _post_in_flight(pipeline: ReplyScoringPipeline) -> asyncio.Task:
    task = asyncio.create_task(pipeline.seeker_risk.score_seeker_post(POST))
    await asyncio.sleep(0)  # the task starts: the post is marked before its first wait
    assert pipeline.seeker_risk.is_risk_scoring(POST.message_id)
    return task


async def test_reply_to_a_post_being_risk_scored_goes_at_coaching_priority(database: Database) -> None:
    inference = HeldRiskInference()
    pipeline = ReplyScoringPipeline(database, inference, retention_days=7)
    post_task = await _post_in_flight(pipeline)
    result = await pipeline.score_reply(_reply(600))
    inference.release_risk.set()
    await post_task
    assert result.outcome is ReplyOutcome.NEW
    assert [call.priority for call in inference.reply_calls] == [Priority.COACHING]


async def test_shed_reply_to_a_post_being_risk_scored_sends_no_risk_request_of_its_own(
    database: Database,
) -> None:
    inference = HeldRiskInference()
    inference.fail_with = RequestShed("queue full")
    pipeline = ReplyScoringPipeline(database, inference, retention_days=7)
    post_task = await _post_in_flight(pipeline)
    # Bounded wait: a reply that wrongly waits for a risk request of its own would wait for ever here.
    result = await asyncio.wait_for(pipeline.score_reply(_reply(600)), 30)
    inference.release_risk.set()
    event = await post_task
    assert (result.outcome, result.skip_reason, result.seeker_risk) == (ReplyOutcome.SKIPPED, "shed", None)
    assert [call.message_id for call in inference.risk_calls] == [POST.message_id]
    assert event is not None and event.message_id == POST.message_id


async def test_reply_whose_post_is_stored_during_its_look_up_goes_at_coaching_priority(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The post's risk was in flight when the reply looked it up and stored by the time the reply asked again:
    covered either way, so the reply stays sheddable coaching work (seen under CPU load: a reply went at
    never-shed risk priority because it missed both the stored row and the in-flight mark)."""
    inference = HeldRiskInference()
    pipeline = ReplyScoringPipeline(database, inference, retention_days=7)
    post_task = await _post_in_flight(pipeline)
    looked_up, resume = asyncio.Event(), asyncio.Event()
    run = database.run

    async def run_pausing_after_the_reply_look_up(what, work):
        result = await run(what, work)
        if what.startswith("look up reply"):
            looked_up.set()
            await resume.wait()
        return result

    monkeypatch.setattr(database, "run", run_pausing_after_the_reply_look_up)
    reply_task = asyncio.create_task(pipeline.score_reply(_reply(600)))
    await asyncio.wait_for(looked_up.wait(), 30)
    inference.release_risk.set()
    await post_task
    assert not pipeline.seeker_risk.is_risk_scoring(POST.message_id)
    resume.set()
    result = await asyncio.wait_for(reply_task, 30)
    assert result.outcome is ReplyOutcome.NEW
    assert [call.priority for call in inference.reply_calls] == [Priority.COACHING]


class HeldRiskReplyInference(ScriptedInference):
    """Scripted answers, but a reply carrying its parent's risk stays in flight until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release_risk = asyncio.Event()
        self.risk_reply_arrived = asyncio.Event()

    async def score_reply(self, request: ReplyScoreRequest) -> ReplyScore:
        if request.priority is Priority.RISK:
            self.risk_reply_arrived.set()
            await self.release_risk.wait()
        return await super().score_reply(request)


async def test_only_one_reply_at_a_time_carries_a_never_scored_parents_risk(database: Database) -> None:
    inference = HeldRiskReplyInference()
    pipeline = ReplyScoringPipeline(database, inference, retention_days=7)
    carrier = asyncio.create_task(pipeline.score_reply(_reply(600)))
    await asyncio.wait_for(inference.risk_reply_arrived.wait(), 30)
    sibling = await asyncio.wait_for(pipeline.score_reply(_reply(601)), 30)
    inference.release_risk.set()
    first = await carrier
    assert (first.outcome, sibling.outcome) == (ReplyOutcome.NEW, ReplyOutcome.NEW)
    assert [(c.reply_id, c.priority) for c in inference.reply_calls] == [
        (601, Priority.COACHING),
        (600, Priority.RISK),
    ]


async def test_post_is_no_longer_marked_in_flight_once_scored(database: Database) -> None:
    inference = HeldRiskInference()
    pipeline = ReplyScoringPipeline(database, inference, retention_days=7)
    post_task = await _post_in_flight(pipeline)
    inference.release_risk.set()
    await post_task
    assert not pipeline.seeker_risk.is_risk_scoring(POST.message_id)


# -- real tiny models behind a saturated tiny queue --------------------------------------------------------

QUEUE_SIZE, MAX_BATCH, REPLIES = 2, 2, 60


class InFlightMeter:
    """The real in-process client, counting the requests awaited at once (what the load test samples)."""

    def __init__(self, client: InProcessClient) -> None:
        self.client = client
        self.in_flight = 0
        self.max_in_flight = 0
        self.reply_priorities: list[Priority] = []

    @property
    def ready(self) -> bool:
        return self.client.ready

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        await self.client.close()

    async def _metered(self, call):
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await call
        finally:
            self.in_flight -= 1

    async def score_reply(self, request: ReplyScoreRequest) -> ReplyScore:
        self.reply_priorities.append(request.priority)
        return await self._metered(self.client.score_reply(request))

    async def score_risk(self, request: RiskScoreRequest) -> RiskScore:
        return await self._metered(self.client.score_risk(request))


@pytest.fixture(scope="module")
def crisis_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[Mechanism, str], str]:
    from tests.support.tiny_empathy import build_tiny_empathy_models
    from tests.support.tiny_risk import build_tiny_risk_model

    folder: Path = tmp_path_factory.mktemp("overload-models")
    empathy = build_tiny_empathy_models(folder / "empathy", force_levels=1)
    risk = build_tiny_risk_model(folder / "risk", forced={"suicidal": 0.97}, low_risk=True)
    return {Mechanism(m): str(p) for m, p in empathy.items()}, str(risk)


@pytest.fixture
async def saturated(crisis_models) -> AsyncIterator[InFlightMeter]:
    empathy, risk = crisis_models
    config = InferenceConfig(
        backend="inprocess",
        device="cpu",
        empathy_sources=empathy,
        risk_source=risk,
        max_batch_size=MAX_BATCH,
        max_wait_ms=50.0,  # each batch gathers for 50 ms: far slower than the replies arrive
        queue_size=QUEUE_SIZE,
        coaching_wait_s=0.0,  # past the bound, coaching is shed at once
        cpu_threads=1,
    )
    meter = InFlightMeter(InProcessClient(config))
    await meter.start()
    await meter.client.score_risk(RiskScoreRequest(1, "warm-up: calls wait until the models are loaded"))
    meter.max_in_flight = 0
    yield meter
    await meter.close()


async def _crisis_post_and_its_replies(pipeline: ReplyScoringPipeline):
    post_task = await _post_in_flight(pipeline)
    replies = await asyncio.gather(
        *(pipeline.score_reply(_reply(1_000 + i, responder_id=10 + i)) for i in range(REPLIES))
    )
    return await post_task, replies


async def test_crisis_post_is_escalated_once_while_its_replies_are_shed(
    database: Database, saturated: InFlightMeter
) -> None:
    pipeline = ReplyScoringPipeline(database, saturated, retention_days=7)
    post_event, replies = await _crisis_post_and_its_replies(pipeline)
    events = [e for e in [post_event, *(r.seeker_risk for r in replies)] if e is not None]
    assert [(e.message_id, e.risk.tier) for e in events] == [(POST.message_id, RiskTier.HIGH)]


async def test_replies_beyond_the_queue_bound_are_shed_with_a_reason(
    database: Database, saturated: InFlightMeter
) -> None:
    pipeline = ReplyScoringPipeline(database, saturated, retention_days=7)
    _, replies = await _crisis_post_and_its_replies(pipeline)
    outcomes = {(r.outcome, r.skip_reason) for r in replies}
    assert outcomes <= {(ReplyOutcome.NEW, None), (ReplyOutcome.SKIPPED, "shed")}
    assert (ReplyOutcome.SKIPPED, "shed") in outcomes
    assert set(saturated.reply_priorities) == {Priority.COACHING}


async def test_requests_in_flight_stay_near_the_queue_bound_under_overload(
    database: Database, saturated: InFlightMeter
) -> None:
    pipeline = ReplyScoringPipeline(database, saturated, retention_days=7)
    await _crisis_post_and_its_replies(pipeline)
    # The bound, plus what sits between the queue and its callers (the batch running, batches answered but
    # not yet resumed, callers at the admission lock) and the post's risk request: a few batches' worth,
    # independent of how many replies are offered (all 60 were in flight when they went at risk priority).
    assert saturated.max_in_flight <= QUEUE_SIZE + 4 * MAX_BATCH + 1
