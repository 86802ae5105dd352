"""Turn texts into padded batches of token windows, and windows back into one score per text."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from inference.risk.windows import window_spans

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenWindows:
    """Every window of every text (special tokens included), and which text each window came from."""

    input_ids: list[list[int]]
    owners: list[int]
    n_texts: int


def content_tokens(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text without special tokens and without truncation (windows do the cutting)."""
    if not texts:
        return []
    return tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after one sequence (e.g. [CLS] ... [SEP], or <s> ... </s>)."""
    probe = "hello"
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start]), list(full[start + len(plain) :])
    raise ValueError("cannot tell this tokenizer's special tokens apart from the text")


def plan_windows(tokenizer, texts: Sequence[str], *, window_tokens: int, overlap_tokens: int) -> TokenWindows:
    prefix, suffix = special_tokens(tokenizer)
    content = window_tokens - len(prefix) - len(suffix)
    if content < 2:
        raise ValueError(f"a window of {window_tokens} tokens leaves no room for text")
    overlap = min(overlap_tokens, content - 1)
    windows: list[list[int]] = []
    owners: list[int] = []
    for index, ids in enumerate(content_tokens(tokenizer, texts)):
        for start, end in window_spans(len(ids), content, overlap):
            windows.append(prefix + list(ids[start:end]) + suffix)
            owners.append(index)
    return TokenWindows(windows, owners, len(texts))


def padded_batches(
    windows: Sequence[Sequence[int]], *, pad_id: int, batch_size: int, device: str | torch.device = "cpu"
) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """``(window indices, input_ids, attention_mask)`` batches of similar length (less padding, less work)."""
    order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(windows[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            ids[row, : len(windows[i])] = torch.tensor(windows[i], dtype=torch.long)
            mask[row, : len(windows[i])] = 1
        yield chunk, ids.to(device), mask.to(device)


def max_over_windows(window_scores: torch.Tensor, owners: Sequence[int], n_texts: int) -> torch.Tensor:
    """Per-text maximum of per-window scores: a crisis in any part of a long post counts."""
    out = torch.full((n_texts, window_scores.shape[1]), float("-inf"), dtype=window_scores.dtype)
    index = torch.tensor(list(owners), dtype=torch.long).unsqueeze(1).expand_as(window_scores)
    return out.scatter_reduce(0, index, window_scores, reduce="amax", include_self=True)
