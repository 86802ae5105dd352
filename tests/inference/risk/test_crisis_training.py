"""Training the crisis head end to end on a tiny encoder and made-up rows: selection, refit, calibration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inference.risk import crisis_train as ct
from inference.risk.crisis import CRISIS_LABEL, CrisisHead, SentenceEncoder
from inference.risk.model_folder import read_calibration
from inference.risk.scorer import RiskScorer
from inference.types import RiskThresholds, RiskTier
from tests.support.tiny_risk import build_tiny_pooled_risk_model, write_calibration

CRISIS = ["i want to die", "i will kill myself", "no one would miss me", "i want to end my life"]
CALM = ["hello", "thanks", "exam is killing me", "help me with my exam", "you are not alone", "call me"]


def _rows() -> list[ct.Row]:
    rows = []
    for copy in range(5):
        rows += [
            ct.Row(f"{text} {'!' * copy}", 1, f"p{i}-{copy}", "written", "crisis")
            for i, text in enumerate(CRISIS)
        ]
        rows += [
            ct.Row(f"{text} {'.' * copy}", 0, f"n{i}-{copy}", "written", "calm")
            for i, text in enumerate(CALM)
        ]
    rows += [ct.Row(f"ordinary turn {i}", 0, f"e{i % 12}", "esconv", "esconv") for i in range(60)]
    return rows


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModel, AutoTokenizer

    folder = build_tiny_pooled_risk_model(tmp_path_factory.mktemp("risk") / "risk")
    base = folder / "base"
    return folder, AutoModel.from_pretrained(base).eval(), AutoTokenizer.from_pretrained(base)


def test_cross_validation_keeps_the_declared_false_alarm_limits(tiny, tmp_path):
    _, encoder, tokenizer = tiny
    cache = ct.EmbeddingCache(SentenceEncoder(encoder, tokenizer), tmp_path / "cache.npz")
    rows = _rows()
    run = ct.cross_validate(ct.Variant("A2"), rows, cache, seed=13)
    assert run["ordinary_high_rate"] <= ct.ORDINARY_LIMIT
    assert run["hard_negative_high_rate"] <= ct.HARD_NEGATIVE_LIMIT
    assert 0.0 <= run["recall"] <= 1.0
    # Cached: a second run encodes nothing new and gives the same out-of-fold logits.
    again = ct.cross_validate(ct.Variant("A2"), rows, cache, seed=13)
    np.testing.assert_allclose(run["oof_logits"], again["oof_logits"])


def test_choose_prefers_the_cheaper_variant_within_one_point():
    report = {"A2": {"recall_mean": 0.90}, "B": {"recall_mean": 0.905}, "C2": {"recall_mean": 0.95}}
    assert ct.choose(report) == "C2"
    report["C2"]["recall_mean"] = 0.909
    assert ct.choose(report) == "A2"


def test_tuned_head_saves_an_adapter_the_scorer_reads(tiny, tmp_path):
    folder, encoder, tokenizer = tiny
    recipe = ct.TunedRecipe(epochs=1, blocks=(0, 1), ordinary_per_epoch=10, batch_size=8)
    tuned, head = ct.fit_tuned(encoder, tokenizer, _rows(), seed=1, recipe=recipe)
    out = tmp_path / "model"
    import shutil

    shutil.copytree(folder, out)
    tuned.save_pretrained(out / "crisis_adapter")
    from dataclasses import replace

    CrisisHead(
        replace(head.config, base_model=str((out / "base").resolve()), adapter="crisis_adapter"), head.tensors
    ).save(out)
    write_calibration(out, RiskThresholds(elevated={"suicidal": 0.4}, high={"suicidal": 0.5}))
    ct.write_crisis_calibration(out, {"high": 0.8, "elevated": 0.2}, "a test")
    calibration = read_calibration(out)
    assert calibration is not None
    assert calibration.thresholds.high == {CRISIS_LABEL: 0.8}
    assert "suicidal" not in calibration.thresholds.elevated  # the crisis head replaced it
    scorer = RiskScorer.load(out)
    [result] = scorer.predict(["i want to die"])
    assert CRISIS_LABEL in result.probabilities
    assert result.tier in (RiskTier.NONE, RiskTier.ELEVATED, RiskTier.HIGH)
    assert json.loads((out / "crisis_head.json").read_text())["config"]["adapter"] == "crisis_adapter"


def test_esconv_halves_split_by_conversation(tmp_path):
    data = tmp_path / "data" / "esconv-dev"
    data.mkdir(parents=True)
    (data / "seeker_turns.csv").write_text(
        "conversation,turn,text\n0,0,hello\n1,0,hi\n2,3,ok\n181,6,made up crisis turn\n", encoding="utf-8"
    )
    train = ct.esconv_turns(Path(tmp_path / "data"), half="train")
    heldout = ct.esconv_turns(Path(tmp_path / "data"), half="heldout")
    assert {row.group for row in train} == {"e0", "e2"}
    assert {row.group for row in heldout} == {"e1", "e181"}
    assert [row.label for row in heldout if row.group == "e181"] == [1]
