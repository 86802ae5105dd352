"""ScoringEngine on real tiny models: seeker caching, length grouping, input rules, int8 and batching parity."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from inference.engine import (
    MAX_TEXT_CHARS,
    ScoringEngine,
    SeekerCache,
    configure_cpu_threads,
    cpu_has_native_bf16,
    model_dtype,
    prepare_text,
    visible_text,
)
from inference.errors import InferenceError, InputRejected
from inference.types import Mechanism, ReplyScore, ReplyScoreRequest, RiskScore, RiskScoreRequest

PARENT = "My exams start tomorrow and I can't stop panicking about them."
REPLIES = ("You've got this.", "What part worries you most? Maybe we can break it down together.", "ok")


@pytest.fixture(scope="module")
def engine(tiny_config) -> ScoringEngine:
    return ScoringEngine.load(tiny_config("inprocess"))


@pytest.fixture
def fresh(engine: ScoringEngine) -> ScoringEngine:
    """The shared engine with an empty cache and zeroed counters."""
    engine.cache.clear()
    engine.stats = type(engine.stats)()
    return engine


def test_replies_to_one_parent_encode_the_seeker_once(fresh):
    results = fresh.score_batch(
        [ReplyScoreRequest(1, PARENT, 10 + i, text) for i, text in enumerate(REPLIES)]
    )
    assert all(isinstance(result, ReplyScore) for result in results)
    assert fresh.stats.seeker_encodings == 1


def test_a_cached_parent_is_not_encoded_again_in_a_later_batch(fresh):
    fresh.score_batch([ReplyScoreRequest(1, PARENT, 10, REPLIES[0])])
    fresh.score_batch([ReplyScoreRequest(1, PARENT, 11, REPLIES[1])])
    assert fresh.stats.seeker_encodings == 1
    assert fresh.cache.hits == 1


def test_an_edited_parent_is_encoded_again(fresh):
    fresh.score_batch([ReplyScoreRequest(1, PARENT, 10, REPLIES[0])])
    fresh.score_batch([ReplyScoreRequest(1, PARENT + " (edited)", 11, REPLIES[0])])
    assert fresh.stats.seeker_encodings == 2


def test_replies_quoting_a_parent_before_and_after_an_edit_use_their_own_text(fresh):
    before = ReplyScoreRequest(1, PARENT, 10, REPLIES[1])
    after = ReplyScoreRequest(1, "My dog ran away this morning and the house feels empty.", 11, REPLIES[1])
    together = fresh.score_batch([before, after])
    fresh.cache.clear()
    (alone,) = fresh.score_batch([after])
    probabilities = [r.empathy.emotional_reactions.probabilities for r in (*together, alone)]
    assert probabilities[0] != pytest.approx(probabilities[1], abs=1e-6)  # the two parents really differ
    assert probabilities[1] == pytest.approx(probabilities[2], abs=1e-4)


def test_the_seeker_cache_keeps_only_its_capacity():
    cache = SeekerCache(2)
    for parent_id in range(3):
        entry = cache.get(parent_id, "text")
        cache.put(parent_id, entry)
    assert len(cache) == 2


def test_cached_results_equal_uncached_results(fresh):
    request = ReplyScoreRequest(1, PARENT, 10, REPLIES[1])
    (first,) = fresh.score_batch([request])
    (second,) = fresh.score_batch([dataclasses.replace(request, reply_id=11)])
    assert second.empathy == first.empathy
    assert second.parent_risk == first.parent_risk


def test_mixed_lengths_in_one_batch_score_as_they_do_alone(fresh):
    requests = [
        ReplyScoreRequest(i % 3, PARENT * (1 + i % 3), 100 + i, REPLIES[i % 3] * (1 + i % 5))
        for i in range(12)
    ]
    batched = fresh.score_batch(requests)
    for request, together in zip(requests, batched, strict=True):
        fresh.cache.clear()
        (alone,) = fresh.score_batch([request])
        for mechanism, score in together.empathy.by_mechanism().items():
            expected = alone.empathy.by_mechanism()[mechanism]
            assert score.level == expected.level
            assert score.probabilities == pytest.approx(expected.probabilities, abs=1e-4)
            assert score.rationales == expected.rationales
        assert together.parent_risk.probabilities == pytest.approx(alone.parent_risk.probabilities, abs=1e-4)


def test_a_mixed_batch_answers_reply_and_risk_requests_in_order(fresh):
    results = fresh.score_batch(
        [
            RiskScoreRequest(5, "checking in"),
            ReplyScoreRequest(1, PARENT, 10, REPLIES[0]),
            RiskScoreRequest(6, "hi"),
        ]
    )
    assert [type(result) for result in results] == [RiskScore, ReplyScore, RiskScore]
    assert results[0].message_id == 5 and results[2].message_id == 6


def test_bad_items_get_input_rejected_and_the_rest_of_the_batch_is_scored(fresh):
    results = fresh.score_batch(
        [
            ReplyScoreRequest(1, PARENT, 10, ""),
            ReplyScoreRequest(1, "\u200b\u200b", 11, REPLIES[0]),
            ReplyScoreRequest(2, PARENT, 12, REPLIES[0]),
            RiskScoreRequest(3, "\ufeff \n"),
        ]
    )
    assert isinstance(results[0], InputRejected) and "reply 10" in str(results[0])
    assert isinstance(results[1], InputRejected) and "parent message 1" in str(results[1])
    assert isinstance(results[2], ReplyScore)
    assert isinstance(results[3], InputRejected)


def test_zero_width_characters_alone_are_not_visible_text():
    assert visible_text("\u200b\u200c\u200d\u2060\ufeff \t\n") == ""
    assert visible_text("\u200bhi\u200b") == "hi"


def test_overlong_text_is_capped_to_its_first_characters():
    text = "a" * (MAX_TEXT_CHARS + 500)
    assert prepare_text(text, what="reply 1") == text[:MAX_TEXT_CHARS]


def test_a_failing_model_call_fails_only_the_inputs_that_break_it(fresh, monkeypatch):
    real_predict = fresh.risk.predict

    def predict(texts):
        if any("BREAK" in text for text in texts):
            raise RuntimeError("model fault")
        return real_predict(texts)

    monkeypatch.setattr(fresh.risk, "predict", predict)
    results = fresh.score_batch(
        [RiskScoreRequest(1, "fine"), RiskScoreRequest(2, "BREAK"), RiskScoreRequest(3, "ok")]
    )
    assert isinstance(results[0], RiskScore) and isinstance(results[2], RiskScore)
    assert isinstance(results[1], InferenceError) and "BREAK" not in str(results[1])


def _quantised_layers(engine: ScoringEngine) -> int:
    from inference.engine import _module_slots

    return sum(
        type(layer).__name__ == "Linear" and "quantized" in type(layer).__module__
        for _, _, module in _module_slots(engine.empathy) + _module_slots(engine.risk)
        for layer in module.modules()
    )


def test_int8_is_kept_when_it_agrees_with_fp32_on_the_probes(tiny_config):
    engine = ScoringEngine.load(tiny_config("inprocess"))
    agreement = engine.quantize_int8(min_agreement=0.0)
    assert 0.0 <= agreement <= 1.0
    assert _quantised_layers(engine) > 0
    assert "int8" in engine.model_versions
    assert isinstance(engine.score_batch([ReplyScoreRequest(1, PARENT, 2, REPLIES[1])])[0], ReplyScore)


def test_int8_is_dropped_when_it_changes_the_probe_scores(tiny_config):
    engine = ScoringEngine.load(tiny_config("inprocess"))
    engine.quantize_int8(min_agreement=1.01)  # an agreement no quantisation can reach
    assert _quantised_layers(engine) == 0
    assert "int8" not in engine.model_versions


def test_cpu_threads_follow_the_setting():
    before = torch.get_num_threads()
    try:
        assert configure_cpu_threads(1) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16 (AMX / AVX512-BF16)")
def test_cpu_bf16_runs_the_models_in_bf16_and_keeps_the_levels(tiny_config, engine):
    bf16 = ScoringEngine.load(tiny_config("inprocess", cpu_dtype="bf16"))
    request = ReplyScoreRequest(1, PARENT, 2, REPLIES[1])
    (fast,) = bf16.score_batch([request])
    engine.cache.clear()
    (exact,) = engine.score_batch([request])
    assert bf16.model_versions["precision"] == "bfloat16"
    assert next(iter(bf16.empathy.seeker_encoders.values())).dtype == torch.bfloat16
    for mechanism, score in fast.empathy.by_mechanism().items():
        assert score.probabilities == pytest.approx(
            exact.empathy.by_mechanism()[mechanism].probabilities, abs=0.05
        )


def test_cpu_runs_the_checkpoints_own_precision_by_default(engine):
    assert model_dtype("cpu") is None
    assert engine.model_versions["precision"] == "fp32"


def test_auto_cpu_precision_is_bf16_exactly_where_the_cpu_has_it_natively():
    expected = torch.bfloat16 if cpu_has_native_bf16() else None
    assert model_dtype("cpu", "auto") == expected


def test_auto_cpu_precision_stays_fp32_without_native_bf16(monkeypatch):
    import inference.engine as engine_module

    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: False)
    assert model_dtype("cpu", "auto") is None
    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: True)
    assert model_dtype("cpu", "auto") == torch.bfloat16
    assert model_dtype("cpu", "fp32") is None


def test_int8_keeps_a_multitask_models_one_shared_responder(tiny_config, tmp_path):
    from tests.support.tiny_empathy import build_tiny_multitask

    folder = str(build_tiny_multitask(tmp_path))
    engine = ScoringEngine.load(tiny_config("inprocess", empathy_sources={m: folder for m in Mechanism}))
    assert len({id(engine.empathy.responders[m].responder_encoder) for m in Mechanism}) == 1
    engine.quantize_int8(min_agreement=0.0)
    assert _quantised_layers(engine) > 0
    # Still one responder module (quantised once), so a reply still takes one responder pass.
    assert len({id(engine.empathy.responders[m].responder_encoder) for m in Mechanism}) == 1
    assert isinstance(engine.score_batch([ReplyScoreRequest(1, PARENT, 2, REPLIES[1])])[0], ReplyScore)
