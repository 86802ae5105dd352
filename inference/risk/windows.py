"""Split a long token sequence into overlapping windows a short-context encoder can read."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def window_spans(n_tokens: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """``(start, end)`` token spans of at most ``window`` tokens that cover ``0..n_tokens``.

    Consecutive windows share at least ``overlap`` tokens, so a phrase cut by one window boundary is
    whole in the next. The last window is aligned to the end of the text rather than left as a short tail.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1 token, not {window}")
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must be between 0 and window - 1 ({window - 1}), not {overlap}")
    if n_tokens <= window:
        return [(0, max(0, n_tokens))]
    step = window - overlap
    spans = []
    start = 0
    while start + window < n_tokens:
        spans.append((start, start + window))
        start += step
    spans.append((n_tokens - window, n_tokens))
    return spans
