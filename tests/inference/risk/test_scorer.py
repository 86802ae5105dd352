"""RiskScorer on tiny random models: both problem types, windows over long texts, thresholds, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch

from inference.errors import InputRejected, ModelLoadError
from inference.risk.encoding import plan_windows
from inference.risk.model_folder import read_pooled_config
from inference.risk.scorer import RiskScorer
from inference.types import RiskThresholds, RiskTier
from tests.support.tiny_risk import (
    MULTI_LABEL,
    PEERCARE_LABELS,
    PUBLISHED_LABELS,
    SINGLE_LABEL,
    build_tiny_pooled_risk_model,
    build_tiny_risk_model,
)

TEXTS = ["i feel sad today", "work is stressful and i am tired", "hello"]


def test_labels_come_from_id2label_in_order(single_label_model) -> None:
    assert RiskScorer.load(single_label_model).labels == PUBLISHED_LABELS


def test_multi_label_model_gives_independent_sigmoid_probabilities(tmp_path) -> None:
    forced = {"suicidal": 0.8, "depression": 0.7, "stress": 0.9}
    scorer = RiskScorer.load(build_tiny_risk_model(tmp_path, forced=forced))
    for probabilities in scorer.probabilities(TEXTS):
        assert probabilities == pytest.approx(forced, abs=1e-4)  # sums to 2.4: not a softmax


def test_single_label_model_gives_softmax_probabilities_that_sum_to_one(single_label_model) -> None:
    scorer = RiskScorer.load(single_label_model)
    assert scorer.problem_type == SINGLE_LABEL
    for probabilities in scorer.probabilities(TEXTS[:1]):
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_problem_type_override_switches_softmax_to_sigmoid(single_label_model) -> None:
    softmax = RiskScorer.load(single_label_model).probabilities(TEXTS[:1])[0]
    sigmoid = RiskScorer.load(single_label_model, problem_type=MULTI_LABEL).probabilities(TEXTS[:1])[0]
    logits = torch.log(torch.tensor(list(softmax.values())))  # softmax logits up to a shared constant
    assert sum(sigmoid.values()) != pytest.approx(1.0, abs=1e-3)
    assert [sigmoid[label] > 0.5 for label in sigmoid] == [
        bool(v) for v in (torch.tensor([math.log(p / (1 - p)) for p in sigmoid.values()]) > 0).tolist()
    ]
    assert max(softmax, key=softmax.get) == PUBLISHED_LABELS[int(torch.argmax(logits))]


def test_auto_problem_type_follows_the_config(multi_label_model) -> None:
    assert RiskScorer.load(multi_label_model, problem_type="auto").problem_type == MULTI_LABEL


def test_config_without_problem_type_uses_softmax_for_several_labels(tmp_path) -> None:
    scorer = RiskScorer.load(build_tiny_risk_model(tmp_path, labels=PUBLISHED_LABELS, problem_type=None))
    assert scorer.problem_type == SINGLE_LABEL


def test_unknown_problem_type_is_refused_naming_the_setting(multi_label_model) -> None:
    with pytest.raises(ModelLoadError, match="RISK_PROBLEM_TYPE"):
        RiskScorer.load(multi_label_model, problem_type="regression")


def test_low_risk_model_leaves_tiers_to_the_phrase_layer(tmp_path) -> None:
    scorer = RiskScorer.load(build_tiny_risk_model(tmp_path, low_risk=True))
    calm, crisis = scorer.predict(["i had a long day at work", "i want to kill myself tonight"])
    assert all(p == pytest.approx(0.01, abs=1e-4) for p in calm.probabilities.values())
    assert calm.tier == RiskTier.NONE
    assert crisis.tier == RiskTier.HIGH
    assert crisis.phrase_matches == ("high:kill_myself",)
    assert crisis.triggered_labels == ()


def test_predict_keeps_input_order_across_a_batch(multi_label_model) -> None:
    scorer = RiskScorer.load(multi_label_model)
    together = scorer.predict(TEXTS)
    alone = [scorer.predict([text])[0] for text in TEXTS]
    for a, b in zip(together, alone, strict=True):
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-5)


def _long_text(ending: str) -> str:
    return " ".join(["work is stressful and i am tired"] * 12) + " " + ending


def test_long_text_is_split_into_windows_not_truncated(short_window_model) -> None:
    scorer = RiskScorer.load(short_window_model)
    text = _long_text("i want to die")
    assert scorer.window_tokens == 24
    assert scorer.token_length(text) > 3 * scorer.window_tokens
    plan = plan_windows(scorer.tokenizer, [text], window_tokens=24, overlap_tokens=scorer.overlap_tokens)
    ending = scorer.tokenizer("i want to die", add_special_tokens=False)["input_ids"]
    assert len(plan.input_ids) > 3
    assert all(len(ids) <= 24 for ids in plan.input_ids)
    assert plan.input_ids[-1][-1 - len(ending) : -1] == ending  # the end of the text is read, before [SEP]


def test_long_text_score_is_the_maximum_over_its_windows(short_window_model) -> None:
    scorer = RiskScorer.load(short_window_model)
    text = _long_text("i want to die")
    plan = plan_windows(scorer.tokenizer, [text], window_tokens=24, overlap_tokens=scorer.overlap_tokens)
    assert len(plan.input_ids) > 1
    with torch.inference_mode():
        logits = [
            scorer._window_scores(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))[0]
            for ids in plan.input_ids
        ]
    # Each window read alone, as a sigmoid model's probabilities.
    per_window = [torch.sigmoid(window / scorer._temperatures()) for window in logits]
    expected = torch.stack(per_window).max(dim=0).values
    got = scorer.probabilities([text])[0]
    assert list(got.values()) == pytest.approx(expected.tolist(), abs=1e-5)


def test_calibration_file_sets_default_thresholds(tmp_path) -> None:
    thresholds = RiskThresholds(elevated={"suicidal": 0.2}, high={"suicidal": 0.4})
    folder = build_tiny_risk_model(tmp_path, thresholds=thresholds)
    assert RiskScorer.load(folder).default_thresholds == thresholds
    assert RiskScorer.default_thresholds(folder) == thresholds  # read without loading weights


def test_model_without_calibration_gets_label_aware_defaults(single_label_model) -> None:
    defaults = RiskScorer.load(single_label_model).default_thresholds
    assert "neutral" not in defaults.elevated and "neutral" not in defaults.high
    assert "stress" not in defaults.high


def test_thresholds_argument_overrides_the_defaults_for_tiers(tmp_path) -> None:
    folder = build_tiny_risk_model(tmp_path, forced={"suicidal": 0.5})
    default = RiskScorer.load(folder).predict(["hello"])[0]
    strict = RiskScorer.load(folder, thresholds=RiskThresholds(elevated={}, high={"suicidal": 0.9}))
    assert default.tier == RiskTier.HIGH
    assert strict.predict(["hello"])[0].tier == RiskTier.NONE


@pytest.mark.parametrize("text", ["", "   \n\t", 42])
def test_empty_or_non_text_input_is_rejected_without_scoring(multi_label_model, text) -> None:
    with pytest.raises(InputRejected):
        RiskScorer.load(multi_label_model).predict(["fine", text])


@pytest.mark.parametrize("text", ["😭😭😭", "Je veux mourir", "\u200bhi\u200b", "x" * 20_000])
def test_unusual_but_real_text_still_gets_a_score(multi_label_model, text: str) -> None:
    result = RiskScorer.load(multi_label_model).predict([text])[0]
    assert set(result.probabilities) == set(PEERCARE_LABELS)


def test_missing_model_folder_names_the_setting(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="RISK_MODEL"):
        RiskScorer.load(tmp_path / "nowhere")


def test_folder_without_a_model_is_a_clear_load_error(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="RISK_MODEL"):
        RiskScorer.load(tmp_path / "empty")


def test_pooled_format_loads_with_its_head_and_windows(tmp_path) -> None:
    scorer = RiskScorer.load(build_tiny_pooled_risk_model(tmp_path, forced={"suicidal": 0.9}))
    assert scorer.window_tokens == 32
    result = scorer.predict([_long_text("hello")])[0]
    assert result.probabilities["suicidal"] == pytest.approx(0.9, abs=2e-3)
    assert result.tier == RiskTier.HIGH and result.triggered_labels == ("suicidal",)


def test_pooled_format_applies_its_lora_adapter(tmp_path) -> None:
    plain = RiskScorer.load(build_tiny_pooled_risk_model(tmp_path / "plain", seed=5))
    tuned = RiskScorer.load(build_tiny_pooled_risk_model(tmp_path / "tuned", seed=5, lora=True))
    assert plain.probabilities(TEXTS[:1])[0] != pytest.approx(tuned.probabilities(TEXTS[:1])[0], abs=1e-6)


def test_split_pooled_format_tunes_only_its_adapter_labels(tmp_path) -> None:
    plain = RiskScorer.load(build_tiny_pooled_risk_model(tmp_path / "plain", seed=5))
    split = RiskScorer.load(
        build_tiny_pooled_risk_model(tmp_path / "split", seed=5, lora=True, adapter_labels=("stress",))
    )
    for frozen, tuned in zip(plain.probabilities(TEXTS), split.probabilities(TEXTS), strict=True):
        assert tuned["suicidal"] == pytest.approx(frozen["suicidal"], abs=1e-6)
        assert tuned["depression"] == pytest.approx(frozen["depression"], abs=1e-6)
        assert tuned["stress"] != pytest.approx(frozen["stress"], abs=1e-4)


def test_split_pooled_folder_is_written_in_a_format_older_readers_refuse(tmp_path) -> None:
    folder = build_tiny_pooled_risk_model(tmp_path, lora=True, adapter_labels=("stress", "depression"))
    data = json.loads((folder / "risk_model.json").read_text(encoding="utf-8"))
    assert data["format"] == "peercare-pooled-risk/2"
    assert data["adapter_labels"] == ["stress", "depression"]
    assert read_pooled_config(folder).adapter_labels == ("stress", "depression")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"adapter_labels": []}, "names no adapter_labels"),
        ({"adapter_labels": ["anxiety"]}, "must be labels of the model"),
        ({"adapter": None}, "need an adapter"),
    ],
)
def test_inconsistent_split_pooled_config_is_a_clear_load_error(tmp_path, change, message) -> None:
    folder = build_tiny_pooled_risk_model(tmp_path, lora=True, adapter_labels=("stress",))
    path = folder / "risk_model.json"
    path.write_text(json.dumps({**json.loads(path.read_text(encoding="utf-8")), **change}), encoding="utf-8")
    with pytest.raises(ModelLoadError, match=message):
        RiskScorer.load(folder)
