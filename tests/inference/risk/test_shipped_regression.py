"""The SHIPPED risk model on the Discord-style regression set: crises reach the high tier, chat does not."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from inference.risk.evaluate import needs_moderator_metrics
from inference.risk.scorer import RiskScorer

REGRESSION_SET = Path(__file__).resolve().parents[2] / "data" / "risk_discord_style.csv"


@pytest.fixture(scope="module")
def report() -> dict:
    frame = pd.read_csv(REGRESSION_SET)
    scorer = RiskScorer.load("shipped:risk")
    return needs_moderator_metrics(scorer.predict(frame["text"].tolist()), frame["needs_moderator"].tolist())


def test_regression_set_is_realistic_in_size(report) -> None:
    assert report["n"] >= 60 and report["n_positive"] >= 20 and report["n_negative"] >= 40


def test_high_tier_catches_at_least_90_percent_of_crises(report) -> None:
    assert report["recall_high"] >= 0.9


def test_high_tier_false_alarms_stay_at_most_15_percent(report) -> None:
    assert report["false_alarm_rate"] <= 0.15
