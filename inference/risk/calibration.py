"""Calibrate a risk model on a dev split: per-label temperature scaling, then tier thresholds.

Method (also in the model card):
1. Temperature: for each label, the divisor T of the logits that minimises the binary cross-entropy on the
   dev rows that carry that label (grid search over T in [0.25, 8], log-spaced). This changes how
   confident the probabilities are, not their order.
2. ``high`` (suicidal only): the largest probability cut-off that still puts at least 90% of the dev
   suicidal posts in the high tier (recall >= 0.9).
3. ``elevated`` suicidal: the largest cut-off with recall >= 0.97 (never above ``high``).
   ``elevated`` depression: the balanced-accuracy-optimal cut-off (Youden's J) on dev.
   ``elevated`` stress: the smallest cut-off whose dev precision is >= 0.9, so everyday stress alone does
   not mark a post (stress is the most common state in a support server).
4. ``decision`` cut-offs (for reporting per-label F1/balanced accuracy only): Youden's J on dev.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

TEMPERATURE_GRID = np.exp(np.linspace(np.log(0.25), np.log(8.0), 121))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def binary_nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    p = np.clip(sigmoid(logits / temperature), 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The logit divisor that minimises dev cross-entropy (1.0 when there is nothing to fit)."""
    if len(labels) == 0 or labels.min() == labels.max():
        return 1.0
    losses = [binary_nll(logits, labels, t) for t in TEMPERATURE_GRID]
    return float(TEMPERATURE_GRID[int(np.argmin(losses))])


def threshold_for_recall(
    probabilities: np.ndarray, labels: np.ndarray, recall: float, *, caught: np.ndarray | None = None
) -> float:
    """The largest cut-off with at least ``recall`` of the positives at or above it.

    ``caught`` marks rows another signal (the crisis-phrase layer) already puts in the tier: they count as
    recalled whatever their probability, so only the rest must clear the cut-off.
    """
    is_positive = labels == 1
    n_positive = int(is_positive.sum())
    if n_positive == 0:
        return 1.0
    caught = np.zeros(len(labels), dtype=bool) if caught is None else np.asarray(caught, dtype=bool)
    needed = int(np.ceil(recall * n_positive - 1e-9)) - int((is_positive & caught).sum())
    rest = np.sort(probabilities[is_positive & ~caught])
    if len(rest) == 0:
        return 1.0
    # With k more positives needed, the cut-off is the k-th largest score among those not yet caught.
    return float(rest[len(rest) - min(len(rest), max(1, needed))])


def youden_threshold(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The cut-off that maximises balanced accuracy (TPR + TNR) on these rows."""
    if labels.min() == labels.max():
        return 0.5
    best, best_score = 0.5, -1.0
    for cut in np.unique(probabilities):
        pred = probabilities >= cut
        score = pred[labels == 1].mean() + (~pred[labels == 0]).mean()
        if score > best_score:
            best, best_score = float(cut), float(score)
    return best


def threshold_for_precision(probabilities: np.ndarray, labels: np.ndarray, precision: float) -> float:
    """The smallest cut-off whose precision is at least ``precision`` (1.0 if none reaches it)."""
    order = np.argsort(-probabilities)
    hits = np.cumsum(labels[order] == 1)
    ranks = np.arange(1, len(order) + 1)
    ok = np.flatnonzero(hits / ranks >= precision)
    if len(ok) == 0:
        return 1.0
    return float(probabilities[order][ok.max()])


def balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    labels = labels.astype(bool)
    predicted = predicted.astype(bool)
    parts = [
        predicted[labels].mean() if labels.any() else np.nan,
        (~predicted[~labels]).mean() if (~labels).any() else np.nan,
    ]
    return float(np.nanmean(parts))


def f1(labels: np.ndarray, predicted: np.ndarray) -> float:
    labels = labels.astype(bool)
    predicted = predicted.astype(bool)
    tp = float((labels & predicted).sum())
    denominator = float(labels.sum() + predicted.sum())
    return 2 * tp / denominator if denominator else 0.0
