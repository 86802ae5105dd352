"""Attempt 3 of the chat recogniser's protocol: its IP head ships only when it recognises more reflections."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.empathy import recogniser_train as rt

STRATEGIES = ["Reflection of feelings"] * 10 + ["Questions"] * 10 + ["Self-disclosure"] * 4


def _rows() -> list[dict]:
    return [
        {"conversation": 2 * (i % 6), "reply": f"reply {i}", "strategy": strategy}
        for i, strategy in enumerate(STRATEGIES)
    ]


def _select(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, oof: np.ndarray) -> dict:
    monkeypatch.setattr(rt, "attempt3_out_of_fold", lambda *args, **kwargs: dict.fromkeys(rt.C_GRID, oof))
    rows = _rows()
    return rt.attempt3_selection(["IP3a"], rows, np.arange(len(rows)), np.zeros(len(rows), int), tmp_path)


def test_a_tuned_head_that_separates_reflections_ships(monkeypatch, tmp_path) -> None:
    oof = np.array([0.9] * 10 + [0.1] * 10 + [0.5] * 4)
    result = _select(monkeypatch, tmp_path, oof)
    chosen = result["chosen"]["IP3a"]
    assert result["ships"] and result["candidate"] == "IP3a"
    assert chosen["train_oof_reflection_rate"] == 1.0 and chosen["train_oof_negative_rate"] <= 0.20
    assert chosen["C"] == min(rt.C_GRID)  # equal AUROC: the smallest C
    assert chosen["left_out"] == ["Self-disclosure"]


def test_a_tuned_head_that_cannot_beat_attempt_1_does_not_ship(monkeypatch, tmp_path) -> None:
    # Questions score like reflections: the cut-off that keeps questions at <= 20 % loses the reflections.
    oof = np.array([0.6] * 10 + [0.6] * 10 + [0.5] * 4)
    result = _select(monkeypatch, tmp_path, oof)
    assert not result["ships"]
    assert result["chosen"]["IP3a"]["train_oof_reflection_rate"] <= rt.ATTEMPT1_REFLECTION_RATE


def test_a_run_where_attempt_3_wins_writes_its_adapter_head_and_report(monkeypatch, tmp_path) -> None:
    import argparse
    import csv
    import json

    from inference.empathy.recogniser import ADAPTED_FORMAT, HeadConfig, RecogniserHeads
    from inference.types import Mechanism

    strategies = ["Reflection of feelings", "Questions", "Self-disclosure", "Affirmation and Reassurance"]
    rows = [
        {
            "conversation": conversation,
            "turn": turn,
            "seeker": "s",
            "reply": f"r{conversation}-{turn}",
            "strategy": s,
        }
        for conversation in range(20)
        for turn, s in enumerate(strategies * 2)
    ]
    data = tmp_path / "pairs.csv"
    with data.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    rng = np.random.default_rng(0)
    features = {
        "reply": rng.normal(size=(len(rows), 384)).astype(np.float32),
        "seeker": rng.normal(size=(len(rows), 384)).astype(np.float32),
        **{f"level_{m.value}": np.zeros(len(rows), int) for m in Mechanism},
    }
    reflection = np.array([r["strategy"] == "Reflection of feelings" for r in rows])
    monkeypatch.setattr(rt, "cached_features", lambda rows, cache: features)
    monkeypatch.setattr(
        rt,
        "attempt3_out_of_fold",
        lambda name, rows, train, cache, *a, **k: dict.fromkeys(
            rt.C_GRID, np.where(reflection[train], 0.9, 0.1)
        ),
    )

    def fake_fit(name, choice, rows, train, held, out, cache):
        (out / rt.IP_ADAPTER).mkdir(parents=True)
        head = HeadConfig(cutoff=choice["cutoff"], c=choice["C"], adapter=rt.IP_ADAPTER)
        return head, np.zeros(384, np.float32), 0.0, np.where(reflection[held], 0.9, 0.1)

    monkeypatch.setattr(rt, "fit_attempt3", fake_fit)
    out = tmp_path / "out"
    args = argparse.Namespace(data=data, out=out, cache=tmp_path / "cache", attempt3=["IP3a"])
    report = rt.run(args)
    assert report["shipped_heads"]["IP"] == "IP3a" and report["attempt3"]["ships"]
    config = json.loads((out / "config.json").read_text())
    assert config["format"] == ADAPTED_FORMAT and config["heads"]["IP"]["adapter"] == rt.IP_ADAPTER
    assert config["heads"]["ER"]["adapter"] is None
    heads = RecogniserHeads.load(out)
    assert heads.config.heads["IP"].adapter == rt.IP_ADAPTER
    assert report["heldout"]["after"]["P(IP>0 | Reflection or Restatement)"] == 1.0
    assert json.loads((out / "training_report.json").read_text())["attempt3"]["candidate"] == "IP3a"
