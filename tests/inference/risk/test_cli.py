"""`peercare eval risk` on a CSV: the needs-a-moderator JSON line and per-label metrics."""

from __future__ import annotations

import argparse
import json

import pytest

from inference.risk.cli import register_train
from tests.support.risk_cli import run_eval_risk
from tests.support.tiny_risk import build_tiny_risk_model


@pytest.fixture(scope="module")
def phrase_only_model(tmp_path_factory):
    return build_tiny_risk_model(tmp_path_factory.mktemp("risk-cli"), low_risk=True)


def test_needs_moderator_column_reports_recall_and_false_alarms(tmp_path, phrase_only_model, capsys) -> None:
    csv = tmp_path / "messages.csv"
    csv.write_text(
        "message,urgent\n"
        '"i want to kill myself tonight",1\n'
        '"i am so stressed about exams",1\n'
        '"this exam is killing me lol",0\n'
        '"please call 988 if you feel unsafe",0\n',
        encoding="utf-8",
    )
    code = run_eval_risk(
        [
            "--model",
            str(phrase_only_model),
            "--data",
            str(csv),
            "--text-column",
            "message",
            "--label-column",
            "urgent",
            "--json",
        ]
    )
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0
    assert (report["recall_high"], report["false_alarm_rate"], report["n"]) == (0.5, 0.0, 4)


def test_label_name_column_reports_f1_and_balanced_accuracy(tmp_path, phrase_only_model, capsys) -> None:
    csv = tmp_path / "labelled.csv"
    csv.write_text('text,label\n"hello",stress\n"i feel low",depression\n"ok",stress\n', encoding="utf-8")
    assert run_eval_risk(["--model", str(phrase_only_model), "--data", str(csv), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(report["labels"]) == {"stress", "depression"}
    assert {"f1", "balanced_accuracy", "n"} <= set(report["labels"]["stress"])


def test_missing_column_is_a_clear_error(tmp_path, phrase_only_model, capsys) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("body,label\nhello,0\n", encoding="utf-8")
    assert run_eval_risk(["--model", str(phrase_only_model), "--data", str(csv)]) == 2
    assert "no column 'text'" in capsys.readouterr().err


def test_train_and_eval_register_a_risk_command() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    register_train(sub.add_parser("train").add_subparsers(dest="model"))
    args = parser.parse_args(["train", "risk", "--mode", "head", "--epochs", "1"])
    assert callable(args.func) and args.mode == "head"


def test_train_crisis_refuses_an_attempt_the_protocol_never_declared(tmp_path) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    register_train(sub.add_parser("train").add_subparsers(dest="model"))
    args = parser.parse_args(["train", "crisis", "--attempt", "4", "--output", str(tmp_path)])
    with pytest.raises(
        SystemExit, match=r"--attempt 4 is not a declared attempt \(5, .*, 16, 17, 22, 25, 26, 27, 28\)"
    ):
        args.func(args)
    assert not any(tmp_path.iterdir())  # refused before anything was loaded or written
