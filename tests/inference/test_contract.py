"""One contract, three backends: in-process, worker process and Ray Serve answer alike, on real tiny models."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest
import pytest_asyncio

from inference.client import InferenceClient
from inference.engine import ScoringEngine
from inference.errors import InferenceUnavailable, InputRejected, RequestShed
from inference.factory import create_inference_client
from inference.types import (
    Mechanism,
    Priority,
    ReplyScore,
    ReplyScoreRequest,
    RiskScore,
    RiskScoreRequest,
    RiskTier,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

_HAS_RAY = importlib.util.find_spec("ray") is not None

BACKENDS = [
    "inprocess",
    pytest.param("worker", marks=pytest.mark.slow),
    pytest.param(
        "ray",
        marks=[
            pytest.mark.slow,
            pytest.mark.ray,
            pytest.mark.skipif(not _HAS_RAY, reason="Ray is not installed (pip install 'peercare[ray]')"),
        ],
    ),
]

PARENT = "I failed my exam today and I feel like I let everyone down."
REPLIES = [
    "That sounds really hard, I'm sorry.",
    "What happened? Do you want to talk about it?",
    "ok",
    "It seems like you put a lot of pressure on yourself. Exams are one moment, not who you are, and "
    "plenty of people who did well later struggled at first.",
]


def reply(parent_id: int, reply_id: int, text: str, **options: object) -> ReplyScoreRequest:
    return ReplyScoreRequest(parent_id, PARENT, reply_id, text, **options)  # type: ignore[arg-type]


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=BACKENDS)
async def client(request, tiny_config):
    client = create_inference_client(tiny_config(request.param))
    await client.start()
    yield client
    await client.close()


@pytest.fixture(scope="module")
def reference_engine(tiny_config) -> ScoringEngine:
    return ScoringEngine.load(tiny_config("inprocess"))


async def test_every_backend_is_an_inference_client(client):
    assert isinstance(client, InferenceClient)


async def test_reply_score_carries_ids_all_mechanisms_and_parent_risk(client):
    score = await client.score_reply(reply(10, 11, REPLIES[0]))
    assert isinstance(score, ReplyScore)
    assert (score.parent_id, score.reply_id) == (10, 11)
    assert set(score.empathy.by_mechanism()) == set(Mechanism)
    for mechanism_score in score.empathy.by_mechanism().values():
        assert sum(mechanism_score.probabilities) == pytest.approx(1.0, abs=1e-3)
    assert isinstance(score.parent_risk.tier, RiskTier)
    assert score.reply_risk is None
    assert client.ready


async def test_reply_risk_is_scored_only_when_asked(client):
    score = await client.score_reply(reply(20, 21, REPLIES[1], score_reply_risk=True))
    assert score.reply_risk is not None
    assert set(score.reply_risk.probabilities) == set(score.parent_risk.probabilities)


async def test_risk_only_request_scores_that_message(client):
    score = await client.score_risk(RiskScoreRequest(30, "Nobody would notice if I was gone."))
    assert isinstance(score, RiskScore)
    assert score.message_id == 30
    assert all(0.0 <= p <= 1.0 for p in score.risk.probabilities.values())


async def test_rationale_spans_point_into_the_original_reply(client):
    text = REPLIES[3]
    score = await client.score_reply(reply(40, 41, text))
    for mechanism_score in score.empathy.by_mechanism().values():
        for span in mechanism_score.rationales:
            assert text[span.start : span.end] == span.text


async def test_concurrent_replies_match_the_engine_scoring_them_one_by_one(client, reference_engine):
    requests = [reply(50 + i // 4, 500 + i, REPLIES[i % len(REPLIES)] * (1 + i % 3)) for i in range(16)]
    scores = await asyncio.gather(*(client.score_reply(r) for r in requests))
    for request, score in zip(requests, scores, strict=True):
        (alone,) = reference_engine.score_batch([request])
        assert score.reply_id == request.reply_id
        for mechanism, mechanism_score in score.empathy.by_mechanism().items():
            expected = alone.empathy.by_mechanism()[mechanism]
            assert mechanism_score.level == expected.level
            assert mechanism_score.probabilities == pytest.approx(expected.probabilities, abs=1e-4)
        assert score.parent_risk.probabilities == pytest.approx(alone.parent_risk.probabilities, abs=1e-4)


async def test_empty_reply_is_rejected_and_the_backend_keeps_working(client):
    with pytest.raises(InputRejected, match="empty"):
        await client.score_reply(reply(60, 61, "   \n\t "))
    assert isinstance(await client.score_reply(reply(60, 62, REPLIES[0])), ReplyScore)


async def test_zero_width_only_text_is_rejected(client):
    with pytest.raises(InputRejected):
        await client.score_risk(RiskScoreRequest(70, "\u200b\u200d\ufeff \u2060"))


async def test_ten_thousand_character_messages_get_a_defined_result(client):
    long_text = ("I keep thinking about everything that went wrong this year. " * 200)[:10_000]
    score = await client.score_reply(ReplyScoreRequest(80, long_text, 81, long_text, score_reply_risk=True))
    assert score.reply_risk is not None
    for mechanism_score in score.empathy.by_mechanism().values():
        assert all(span.end <= len(long_text) for span in mechanism_score.rationales)


async def test_non_english_and_emoji_text_is_scored_normally(client):
    score = await client.score_reply(
        ReplyScoreRequest(
            90, "Je me sens tellement seul ces jours-ci 😞", 91, "Ich bin für dich da ❤️ 你并不孤单"
        )
    )
    assert isinstance(score, ReplyScore)


async def test_bad_input_among_good_input_fails_only_itself(client):
    outcomes = await asyncio.gather(
        client.score_reply(reply(100, 101, REPLIES[0])),
        client.score_reply(reply(100, 102, "\u200b")),
        client.score_risk(RiskScoreRequest(103, "")),
        client.score_reply(reply(100, 104, REPLIES[1])),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], ReplyScore) and isinstance(outcomes[3], ReplyScore)
    assert isinstance(outcomes[1], InputRejected) and isinstance(outcomes[2], InputRejected)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_calls_made_before_models_are_ready_wait_for_them(backend, tiny_config):
    client = create_inference_client(tiny_config(backend))
    await client.start()
    try:
        assert not client.ready  # start() returned while the models were still loading
        score = await client.score_risk(RiskScoreRequest(1, "first message after start-up"))
        assert isinstance(score, RiskScore)
        assert client.ready
    finally:
        await client.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_full_queue_sheds_coaching_but_never_risk(backend, tiny_config):
    config = tiny_config(backend, queue_size=1, max_batch_size=1, max_wait_ms=0.0, coaching_wait_s=0.0)
    client = create_inference_client(config)
    await client.start()
    try:
        await client.score_risk(RiskScoreRequest(1, "warm up"))
        coaching = [client.score_reply(reply(200, 2000 + i, REPLIES[i % 4])) for i in range(30)]
        risk = [client.score_risk(RiskScoreRequest(3000 + i, f"risk check {i}")) for i in range(15)]
        coaching_outcomes, risk_outcomes = await asyncio.gather(
            asyncio.gather(*coaching, return_exceptions=True), asyncio.gather(*risk, return_exceptions=True)
        )
        assert all(isinstance(o, RiskScore) for o in risk_outcomes)
        shed = [o for o in coaching_outcomes if isinstance(o, RequestShed)]
        assert shed and all(s.reason for s in shed)
        assert all(isinstance(o, (ReplyScore, RequestShed)) for o in coaching_outcomes)
    finally:
        await client.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_models_that_fail_to_load_give_a_typed_error(backend, tiny_config, tmp_path):
    client = create_inference_client(tiny_config(backend, risk_source=str(tmp_path / "no-such-model")))
    await client.start()
    try:
        with pytest.raises(InferenceUnavailable, match="no-such-model"):
            await asyncio.wait_for(client.score_risk(RiskScoreRequest(1, "hello")), 120)
    finally:
        await client.close()


async def test_reply_asking_for_risk_priority_is_scored(client):
    score = await client.score_reply(reply(110, 111, REPLIES[0], priority=Priority.RISK))
    assert isinstance(score, ReplyScore)
