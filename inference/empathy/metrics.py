"""Level and rationale metrics: accuracy, macro-F1, token-F1 and IOU-F1 (Sharma et al. 2020 / ERASER)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from inference.empathy.text import token_runs

log = logging.getLogger(__name__)

IOU_THRESHOLD = 0.5


def accuracy(gold: Sequence[int], predicted: Sequence[int]) -> float:
    return sum(g == p for g, p in zip(gold, predicted, strict=True)) / max(1, len(gold))


def macro_f1(gold: Sequence[int], predicted: Sequence[int], labels: Sequence[int] = (0, 1, 2)) -> float:
    """Unweighted mean of per-level F1 over all three levels (a level never predicted nor present scores 0)."""
    scores = []
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(gold, predicted, strict=True))
        fp = sum(g != label and p == label for g, p in zip(gold, predicted, strict=True))
        fn = sum(g == label and p != label for g, p in zip(gold, predicted, strict=True))
        scores.append(_f1(tp, fp, fn))
    return sum(scores) / len(scores)


def token_f1(gold: Sequence[Sequence[int]], predicted: Sequence[Sequence[int]]) -> float:
    """Per-response binary F1 of rationale tokens, averaged over responses (upstream's definition).

    A response where neither side marks a token counts as 1.0 (upstream's sklearn call scored it 0).
    """
    values = []
    for g, p in zip(gold, predicted, strict=True):
        tp = sum(a == 1 and b == 1 for a, b in zip(g, p, strict=True))
        fp = sum(a != 1 and b == 1 for a, b in zip(g, p, strict=True))
        fn = sum(a == 1 and b != 1 for a, b in zip(g, p, strict=True))
        values.append(1.0 if tp == fp == fn == 0 else _f1(tp, fp, fn))
    return sum(values) / max(1, len(values))


def iou_f1(
    gold: Sequence[Sequence[int]], predicted: Sequence[Sequence[int]], threshold: float = IOU_THRESHOLD
) -> float:
    """Per-response span F1 where a predicted span is a hit when its token IOU with some gold span >= threshold."""
    values = []
    for g, p in zip(gold, predicted, strict=True):
        gold_spans, pred_spans = token_runs(g), token_runs(p)
        if not gold_spans and not pred_spans:
            values.append(1.0)
            continue
        hits = sum(
            1 for span in pred_spans if max((_iou(span, t) for t in gold_spans), default=0.0) >= threshold
        )
        precision = hits / len(pred_spans) if pred_spans else 0.0
        recall = hits / len(gold_spans) if gold_spans else 0.0
        values.append(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
    return sum(values) / max(1, len(values))


def confusion(gold: Sequence[int], predicted: Sequence[int], n: int = 3) -> list[list[int]]:
    """Rows: gold level; columns: predicted level."""
    matrix = [[0] * n for _ in range(n)]
    for g, p in zip(gold, predicted, strict=True):
        matrix[g][p] += 1
    return matrix


def _iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union else 0.0


def _f1(tp: int, fp: int, fn: int) -> float:
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)
