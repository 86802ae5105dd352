"""Level and rationale metrics on hand-checked examples."""

from __future__ import annotations

import pytest

from inference.empathy.data import EmpathyRow, split_by_seeker
from inference.empathy.metrics import accuracy, confusion, iou_f1, macro_f1, token_f1


def test_macro_f1_averages_all_three_levels() -> None:
    gold = [0, 0, 1, 2]
    predicted = [0, 1, 1, 2]
    # F1: level 0 = 2/3, level 1 = 2/3, level 2 = 1
    assert macro_f1(gold, predicted) == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert accuracy(gold, predicted) == 0.75


def test_iou_f1_counts_a_span_overlapping_at_least_half() -> None:
    gold = [[0, 1, 1, 1, 1, 0, 0, 1]]
    # Predicted spans: tokens 1-3 (IOU 3/4 with 1-4: hit) and token 6 (no overlap: miss).
    predicted = [[0, 1, 1, 1, 0, 0, 1, 0]]
    precision, recall = 1 / 2, 1 / 2
    assert iou_f1(gold, predicted) == pytest.approx(2 * precision * recall / (precision + recall))


def test_iou_f1_misses_a_span_overlapping_less_than_half() -> None:
    assert iou_f1([[1, 1, 1, 1, 1]], [[1, 1, 0, 0, 0]]) == 0.0


def test_token_f1_is_averaged_per_response() -> None:
    gold = [[1, 1, 0, 0], [0, 0, 0, 0]]
    predicted = [[1, 0, 0, 0], [0, 0, 0, 0]]
    assert token_f1(gold, predicted) == pytest.approx((2 / 3 + 1.0) / 2)


def test_confusion_rows_are_gold_levels() -> None:
    assert confusion([0, 2, 2], [0, 1, 2]) == [[1, 0, 0], [0, 0, 0], [0, 1, 1]]


def test_dev_split_keeps_each_seeker_post_on_one_side_and_is_repeatable() -> None:
    rows = [EmpathyRow(f"s{i % 20}", f"r{i}", "seeker", "reply", i % 3, "") for i in range(60)]
    train, dev = split_by_seeker(rows, dev_fraction=0.25, seed=7)
    assert {r.sp_id for r in train}.isdisjoint({r.sp_id for r in dev})
    assert len({r.sp_id for r in dev}) == 5
    assert split_by_seeker(list(reversed(rows)), dev_fraction=0.25, seed=7)[1] != []
    assert {r.sp_id for r in split_by_seeker(rows, dev_fraction=0.25, seed=7)[1]} == {r.sp_id for r in dev}
