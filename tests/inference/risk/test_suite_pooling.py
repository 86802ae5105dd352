"""`peercare eval risk --suite A --suite B`: several blind suites judged as one gate, each still reported alone.

One fresh suite of about 190 crises cannot tell apart recall gains under about 0.05 (docs/models/risk-crisis-protocol.md,
after attempt 25); pooling two or three, with the interval said out loud, can.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.risk.chat_eval import evaluate_suite
from inference.risk.scorer import RiskScorer
from inference.types import RiskThresholds
from tests.support.risk_cli import run_eval_risk
from tests.support.tiny_risk import build_tiny_pooled_risk_model, write_calibration

FIRST = [
    ("crisis", "high", "i want to kill myself tonight"),  # a crisis phrase: high whatever the tiny model says
    ("crisis", "high", "nobody would even notice if i was gone"),
    ("calm", "not_high", "hello there"),
    ("calm", "not_high", "exam is killing me"),
]
SECOND = [
    ("crisis", "high", "i feel so low and tired of everything"),
    ("crisis", "high", "ok thx"),
    ("crisis", "high", "i want to end my life"),
    ("calm", "not_high", "lol same"),
]


def _suite(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.write_text(
        "category,expected,text\n" + "".join(f'{c},{e},"{t}"\n' for c, e, t in rows), encoding="utf-8"
    )
    return path


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pooling") / "risk"
    build_tiny_pooled_risk_model(folder)
    write_calibration(folder, RiskThresholds(elevated={"suicidal": 0.05}, high={"suicidal": 0.5}))
    return folder


@pytest.fixture(scope="module")
def scorer(model_folder) -> RiskScorer:
    return RiskScorer.load(model_folder)


def test_two_suites_pool_into_one_report_and_each_keeps_its_own_figures(scorer, tmp_path) -> None:
    first, second = _suite(tmp_path / "first.csv", FIRST), _suite(tmp_path / "second.csv", SECOND)
    pooled = evaluate_suite(scorer, [first, second])
    alone = [evaluate_suite(scorer, path) for path in (first, second)]
    together = evaluate_suite(scorer, _suite(tmp_path / "together.csv", FIRST + SECOND))
    keys = (
        "n",
        "crisis_recall",
        "crisis_recall_95",
        "crisis_recall_worst_category",
        "hard_negative_high_rate",
        "categories",
        "tiers",
    )
    assert {key: pooled[key] for key in keys} == {key: together[key] for key in keys}
    assert pooled["n"] == 8
    figures = ("crisis_recall", "crisis_recall_95", "crisis_recall_worst_category", "hard_negative_high_rate")
    assert pooled["suites"] == {
        str(path): {"n": report["n"], **{key: report[key] for key in figures}}
        for path, report in zip((first, second), alone, strict=True)
    }


def test_recall_comes_with_its_95_percent_interval_which_pooling_narrows(scorer, tmp_path) -> None:
    first = _suite(tmp_path / "first.csv", FIRST)
    copies = [_suite(tmp_path / f"copy{i}.csv", FIRST) for i in range(3)]
    one, three = evaluate_suite(scorer, first), evaluate_suite(scorer, copies)
    for report in (one, three):
        low, high = report["crisis_recall_95"]
        assert 0.0 <= low <= report["crisis_recall"] <= high <= 1.0
    assert one["crisis_recall"] == three["crisis_recall"] == 1.0  # both crises carry a phrase
    assert three["crisis_recall_95"][0] > one["crisis_recall_95"][0]  # 6 of 6 says more than 2 of 2
    assert "suites" not in one  # a single suite is its own pooled figure


def test_cli_takes_the_suite_option_more_than_once(model_folder, tmp_path, capsys) -> None:
    first, second = _suite(tmp_path / "first.csv", FIRST), _suite(tmp_path / "second.csv", SECOND)
    argv = ["--model", str(model_folder), "--suite", str(first), "--suite", str(second), "--json"]
    assert run_eval_risk(argv) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["n"] == 8 and sorted(report["suites"]) == sorted([str(first), str(second)])


def test_the_same_suite_twice_is_refused_not_counted_twice(model_folder, tmp_path, capsys) -> None:
    first = _suite(tmp_path / "first.csv", FIRST)
    (tmp_path / "sub").mkdir()
    again = tmp_path / "sub" / ".." / "first.csv"  # the same file, named another way
    assert run_eval_risk(["--model", str(model_folder), "--suite", str(first), "--suite", str(again)]) == 2
    assert "the same suite was given twice" in capsys.readouterr().err
