"""Overlapping token windows for short-context encoders."""

from __future__ import annotations

import itertools

import pytest
import torch

from inference.risk.encoding import max_over_windows
from inference.risk.windows import window_spans


def test_short_text_is_one_window() -> None:
    assert window_spans(10, 16, 4) == [(0, 10)]


@pytest.mark.parametrize(("n", "window", "overlap"), [(17, 16, 4), (100, 16, 4), (1000, 254, 64), (33, 8, 0)])
def test_windows_cover_every_token_with_the_overlap(n: int, window: int, overlap: int) -> None:
    spans = window_spans(n, window, overlap)
    covered = set()
    for start, end in spans:
        assert end - start == window
        covered.update(range(start, end))
    assert covered == set(range(n))
    for (_, first_end), (second_start, _) in itertools.pairwise(spans):
        assert first_end - second_start >= overlap


def test_last_window_ends_at_the_end_of_the_text() -> None:
    assert window_spans(20, 16, 4)[-1] == (4, 20)


def test_overlap_must_leave_the_window_moving() -> None:
    with pytest.raises(ValueError, match="overlap"):
        window_spans(100, 16, 16)


def test_max_over_windows_takes_each_labels_maximum_per_text() -> None:
    scores = torch.tensor([[0.1, 0.9], [0.7, 0.2], [0.3, 0.3]])
    result = max_over_windows(scores, owners=[0, 0, 1], n_texts=2)
    assert torch.allclose(result, torch.tensor([[0.7, 0.9], [0.3, 0.3]]))
