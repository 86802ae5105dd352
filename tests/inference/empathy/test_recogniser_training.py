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
