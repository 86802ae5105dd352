"""Calibration on a dev split: temperature scaling and tier cut-offs."""

from __future__ import annotations

import numpy as np
import pytest

from inference.risk import calibration as cal


def test_cut_off_for_recall_keeps_at_least_that_share_of_positives() -> None:
    rng = np.random.default_rng(0)
    probabilities = rng.random(200)
    labels = (rng.random(200) < 0.5).astype(int)
    cut = cal.threshold_for_recall(probabilities, labels, 0.9)
    assert (probabilities[labels == 1] >= cut).mean() >= 0.9


def test_cut_off_for_recall_is_the_largest_that_reaches_it() -> None:
    probabilities = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    labels = np.ones(10, dtype=int)
    assert cal.threshold_for_recall(probabilities, labels, 0.9) == pytest.approx(0.1)


def test_temperature_undoes_overconfident_logits() -> None:
    rng = np.random.default_rng(1)
    true_logits = rng.normal(0, 1.5, 4000)
    labels = (rng.random(4000) < cal.sigmoid(true_logits)).astype(int)
    assert cal.fit_temperature(true_logits * 3, labels) == pytest.approx(3.0, rel=0.15)


def test_temperature_is_one_when_dev_has_a_single_class() -> None:
    assert cal.fit_temperature(np.array([1.0, 2.0]), np.array([1, 1])) == 1.0


def test_youden_cut_off_separates_separable_scores() -> None:
    probabilities = np.array([0.1, 0.2, 0.3, 0.7, 0.8])
    labels = np.array([0, 0, 0, 1, 1])
    cut = cal.youden_threshold(probabilities, labels)
    assert cal.balanced_accuracy(labels, probabilities >= cut) == 1.0


def test_precision_cut_off_reaches_the_precision() -> None:
    probabilities = np.array([0.95, 0.9, 0.85, 0.6, 0.5, 0.4])
    labels = np.array([1, 1, 1, 0, 1, 0])
    cut = cal.threshold_for_precision(probabilities, labels, 0.9)
    chosen = probabilities >= cut
    assert labels[chosen].mean() >= 0.9 and cut == pytest.approx(0.85)


def test_posts_caught_by_phrases_count_towards_the_recall() -> None:
    probabilities = np.array([0.9, 0.8, 0.1, 0.05])
    labels = np.ones(4, dtype=int)
    caught = np.array([False, False, True, True])
    assert cal.threshold_for_recall(probabilities, labels, 1.0, caught=caught) == pytest.approx(0.8)
    assert cal.threshold_for_recall(probabilities, labels, 1.0) == pytest.approx(0.05)
