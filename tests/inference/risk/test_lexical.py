"""The word-level risk head: the same numbers as sklearn, a plain-JSON file, and only its own labels moved."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from inference.errors import ModelLoadError
from inference.risk.lexical import LEXICAL_FILE, LexicalHead, fit_lexical_head
from inference.risk.scorer import RiskScorer
from tests.support.tiny_risk import build_tiny_pooled_risk_model

TRAIN = [
    "deadlines at work are crushing me and rent is due",
    "my boss yells and I can't sleep before exams",
    "had a lovely walk with my dog today",
    "baking bread again, the kitchen smells great",
    "so much pressure, exams and deadlines and bills",
    "watched a film with friends, nice evening",
    "panic about money and the landlord again",
    "the garden is blooming, feeling calm",
]
STRESS = np.array([1, 1, 0, 0, 1, 0, 1, 0])
NEW_TEXTS = [
    "Deadlines, deadlines — ДЕДЛАЙН and bills!!",
    "a calm walk in the garden",
    "🙂 🙃",  # no tokens at all: only the intercept
    "exams exams exams exams",
    "",
]


def _fit() -> LexicalHead:
    labels = STRESS[:, None]
    return fit_lexical_head(TRAIN, labels, np.ones_like(labels, dtype=float), ("stress",), min_df=1)


def test_lexical_logits_equal_sklearn_decision_function() -> None:
    head = _fit()
    vectoriser = TfidfVectorizer(min_df=1, sublinear_tf=True, max_features=20000).fit(TRAIN)
    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=3000).fit(
        vectoriser.transform(TRAIN), STRESS
    )
    expected = model.decision_function(vectoriser.transform(NEW_TEXTS))
    assert head.logits(NEW_TEXTS)[:, 0] == pytest.approx(expected, abs=1e-5)


def test_stress_words_raise_the_lexical_logit() -> None:
    logits = _fit().logits(["deadlines and exams and bills", "a walk with my dog in the garden"])[:, 0]
    assert logits[0] > 0 > logits[1]


def test_rows_without_a_label_are_left_out_of_that_label() -> None:
    labels = np.stack([STRESS, np.full(len(TRAIN), -1)], axis=1)
    labels[0, 1], labels[2, 1] = 1, 0
    head = fit_lexical_head(TRAIN, labels, np.ones(labels.shape), ("stress", "depression"), min_df=1)
    assert head.labels == ("stress", "depression")
    assert head.logits(["anything"]).shape == (1, 2)


def test_saved_file_is_plain_json_and_loads_to_the_same_logits(tmp_path) -> None:
    head = _fit()
    path = head.save(tmp_path)
    assert path.name == LEXICAL_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["labels"] == ["stress"] and len(data["tokens"]) == len(data["idf"])
    assert LexicalHead.load(tmp_path).logits(NEW_TEXTS) == pytest.approx(head.logits(NEW_TEXTS), abs=1e-5)
    assert LexicalHead.load(tmp_path / "nowhere") is None


def test_scorer_adds_the_lexical_logit_to_its_label_only(tmp_path) -> None:
    folder = build_tiny_pooled_risk_model(tmp_path / "model", seed=3)
    plain = RiskScorer.load(folder).probabilities(NEW_TEXTS[:2])
    head = _fit()
    head.save(folder)
    mixed = RiskScorer.load(folder).probabilities(NEW_TEXTS[:2])
    lexical = head.logits(NEW_TEXTS[:2])[:, 0]
    for before, after, shift in zip(plain, mixed, lexical, strict=True):
        logit = np.log(before["stress"] / (1 - before["stress"]))
        assert after["stress"] == pytest.approx(1 / (1 + np.exp(-(logit + shift))), abs=1e-4)
        assert after["suicidal"] == pytest.approx(before["suicidal"], abs=1e-6)


def test_lexical_head_for_an_unknown_label_is_a_clear_load_error(tmp_path) -> None:
    folder = build_tiny_pooled_risk_model(tmp_path / "model")
    data = _fit().to_json()
    data["labels"] = ["burnout"]
    (folder / LEXICAL_FILE).write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelLoadError, match="burnout"):
        RiskScorer.load(folder)


def test_corrupt_lexical_file_is_a_clear_load_error(tmp_path) -> None:
    folder = build_tiny_pooled_risk_model(tmp_path / "model")
    (folder / LEXICAL_FILE).write_text('{"format": "something-else"}', encoding="utf-8")
    with pytest.raises(ModelLoadError, match="lexical head"):
        RiskScorer.load(folder)
