"""`peercare eval risk --cut-offs`: a model's trade-off read from one scoring, re-tiered as the scorer tiers."""

from __future__ import annotations

import json
import shutil

import pytest

from inference.risk.chat_eval import at_cut_off, evaluate_suite
from inference.risk.scorer import RiskScorer
from inference.types import RiskThresholds
from tests.support.risk_cli import run_eval_risk
from tests.support.tiny_risk import build_tiny_pooled_risk_model, write_calibration, write_tiny_esconv

TEXTS = [
    "hello there",
    "i want to kill myself tonight",  # a crisis phrase: high whatever the model's cut-off
    "exam is killing me",
    "i feel so low and tired of everything",
    "ok thx",
    "nobody would even notice if i was gone",
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_pooled_risk_model(tmp_path_factory.mktemp("cut-offs") / "risk")


def _with_high_cut_off(tiny_model, tmp_path, cut_off: float):
    folder = tmp_path / f"model-{cut_off}"
    shutil.copytree(tiny_model, folder)
    write_calibration(folder, RiskThresholds(elevated={"suicidal": 0.05}, high={"suicidal": cut_off}))
    return RiskScorer.load(folder)


def test_re_tiering_at_a_cut_off_gives_the_tiers_of_a_model_calibrated_there(tiny_model, tmp_path) -> None:
    scorer = _with_high_cut_off(tiny_model, tmp_path, 0.5)
    results = scorer.predict(TEXTS)
    probabilities = sorted(result.probabilities["suicidal"] for result in results)
    # Cut-offs between, below and above the texts' probabilities, so that tiers really move.
    for cut_off in (0.0, probabilities[2], (probabilities[3] + probabilities[4]) / 2, 1.0):
        moved = at_cut_off(results, scorer.thresholds, cut_off)
        direct = _with_high_cut_off(tiny_model, tmp_path, cut_off).predict(TEXTS)
        assert [r.tier for r in moved] == [r.tier for r in direct]
        assert [r.triggered_labels for r in moved] == [r.triggered_labels for r in direct]
    assert {r.tier.value for r in at_cut_off(results, scorer.thresholds, 1.0)} >= {"high"}  # the phrase floor


def test_suite_reports_each_cut_off_and_recall_never_rises_with_it(tiny_model, tmp_path) -> None:
    suite = tmp_path / "suite.csv"
    suite.write_text(
        "category,expected,text\n"
        + "".join(
            f'{"crisis" if i % 2 else "calm"},{"high" if i % 2 else "not_high"},"{text}"\n'
            for i, text in enumerate(TEXTS)
        ),
        encoding="utf-8",
    )
    scorer = _with_high_cut_off(tiny_model, tmp_path, 0.5)
    report = evaluate_suite(scorer, suite, cut_offs=(0.0, 0.5, 1.0))
    rows = report["at_cut_offs"]
    assert [row["cut_off"] for row in rows] == [0.0, 0.5, 1.0]
    # At the model's own cut-off the figures are the report's own.
    assert {key: rows[1][key] for key in ("crisis_recall", "hard_negative_high_rate")} == {
        key: report[key] for key in ("crisis_recall", "hard_negative_high_rate")
    }
    assert rows[0]["crisis_recall"] == rows[0]["hard_negative_high_rate"] == 1.0  # everything at high
    recalls = [row["crisis_recall"] for row in rows]
    assert recalls == sorted(recalls, reverse=True)


def test_cli_prints_the_cut_offs_in_its_json_line(tiny_model, tmp_path, capsys) -> None:
    write_tiny_esconv(tmp_path / "data", "conversation,turn,text\n1,0,hi\n1,2,i feel low\n3,0,ok\n")
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    write_calibration(folder, RiskThresholds(elevated={"suicidal": 0.05}, high={"suicidal": 0.5}))
    argv = ["--model", str(folder), "--ordinary-chat", "heldout", "--data-dir", str(tmp_path / "data")]
    assert run_eval_risk([*argv, "--cut-offs", "0,1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [row["cut_off"] for row in report["at_cut_offs"]] == [0.0, 1.0]
    assert report["at_cut_offs"][0]["ordinary_high_rate"] == 1.0
    assert report["at_cut_offs"][1]["ordinary_high_rate"] == 0.0


@pytest.mark.parametrize("value", ["high", "0.5,2", ""])
def test_cli_refuses_cut_offs_that_are_not_probabilities(value: str, capsys) -> None:
    with pytest.raises(SystemExit):
        run_eval_risk(["--suite", "x.csv", "--cut-offs", value])
    assert "probabilities" in capsys.readouterr().err


def test_cli_refuses_cut_offs_where_it_cannot_apply_them(tmp_path, capsys) -> None:
    """--data and --dataset report metrics of their own: a cut-off given there would be ignored, so it is an error."""
    assert run_eval_risk(["--data", str(tmp_path / "x.csv"), "--cut-offs", "0.9"]) == 2
    assert "--cut-offs needs --suite or --ordinary-chat" in capsys.readouterr().err
