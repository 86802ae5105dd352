"""Text to tokens and back: character offsets, rationale token labels, and merged rationale spans."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from inference.types import RationaleSpan

log = logging.getLogger(__name__)

IGNORE = -100


def lowercase_with_origins(text: str) -> tuple[str, list[int]]:
    """``text.lower()``, exactly as upstream lowercased, and for each of its characters the index it came from.

    A character can lowercase to more than one ('İ' becomes 'i' and a combining dot), so offsets into the
    lowered text are mapped back through ``origins`` to point into ``text`` (``original_span``).
    """
    lowered = text.lower()
    origins = [index for index, ch in enumerate(text) for _ in range(len(ch.lower()))]
    if len(origins) != len(lowered):  # str.lower() is per character in every Unicode version we know of
        raise ValueError("lowercasing changed the text's length in an unexpected way")
    return lowered, origins


def original_span(span: tuple[int, int], origins: Sequence[int], length: int) -> tuple[int, int]:
    """A half-open span of the lowered text as a span of the original text (``length`` characters long)."""
    start, end = span
    if end <= start:
        at = origins[start] if start < len(origins) else length
        return at, at
    return origins[start], origins[end - 1] + 1


@dataclass(frozen=True)
class Tokenized:
    """One text's token ids (special tokens included, truncated) and each token's character span (None: special)."""

    input_ids: list[int]
    offsets: list[tuple[int, int] | None]


def tokenize(tokenizer, texts: Sequence[str], *, max_length: int, lowercase: bool = False) -> list[Tokenized]:
    if not texts:
        return []
    lowered = [lowercase_with_origins(t) for t in texts] if lowercase else None
    prepared = [low for low, _ in lowered] if lowered is not None else list(texts)
    encoded = tokenizer(
        prepared,
        add_special_tokens=True,
        truncation=True,
        max_length=max_length,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        verbose=False,
    )
    out = []
    for index, (ids, offsets, special) in enumerate(
        zip(encoded["input_ids"], encoded["offset_mapping"], encoded["special_tokens_mask"], strict=True)
    ):
        spans = [
            None if is_special else (int(s), int(e))
            for (s, e), is_special in zip(offsets, special, strict=True)
        ]
        if lowered is not None:  # offsets into the lowered text, mapped back into the text as written
            origins, length = lowered[index][1], len(texts[index])
            spans = [None if span is None else original_span(span, origins, length) for span in spans]
        out.append(Tokenized(list(ids), spans))
    return out


def rationale_char_spans(response: str, rationales: str) -> list[tuple[int, int]]:
    """Where each '|'-separated rationale occurs in the response (exact first, then ignoring case).

    Upstream searched with unescaped regexes and skipped failures; plain substring search is exact.
    Rationales that cannot be found are skipped (counted in the debug log, never printed).
    """
    spans: list[tuple[int, int]] = []
    missing = 0
    folded = response.lower() if len(response.lower()) == len(response) else None
    for piece in (p.strip() for p in rationales.split("|")):
        if not piece:
            continue
        start = response.find(piece)
        if start < 0 and folded is not None:
            start = folded.find(piece.lower())
        if start < 0:
            missing += 1
            continue
        spans.append((start, start + len(piece)))
    if missing:
        log.debug("%d rationale piece(s) not found in their response", missing)
    return spans


def token_rationale_labels(
    tokens: Tokenized, char_spans: Sequence[tuple[int, int]], *, all_if_none: bool
) -> list[int]:
    """1 for tokens overlapping a rationale, 0 otherwise, IGNORE for special tokens.

    ``all_if_none``: upstream's author-confirmed heuristic labels every token 1 when a row has no rationale.
    """
    labels = []
    for offset in tokens.offsets:
        if offset is None:
            labels.append(IGNORE)
        elif not char_spans and all_if_none:
            labels.append(1)
        else:
            start, end = offset
            labels.append(int(any(start < e and s < end for s, e in char_spans)))
    return labels


# Characters a highlight should neither start with (stray sentence ends) nor end with (dangling commas).
_LEADING_JUNK = frozenset(",.;:!?)]}")
_TRAILING_JUNK = frozenset(",;:([{")


def merge_token_spans(text: str, tokens: Tokenized, marked: Sequence[bool]) -> tuple[RationaleSpan, ...]:
    """Character spans of runs of marked tokens, widened to whole words and trimmed of stray punctuation.

    Runs are broken only by an unmarked token; the text is sliced from the original, so emoji and
    non-ASCII come back exactly as written.
    """
    runs: list[list[int]] = []
    previous_marked = False
    for offset, is_marked in zip(tokens.offsets, marked, strict=False):
        if offset is None or offset[1] <= offset[0]:
            continue  # special or empty tokens neither extend nor break a run
        if is_marked:
            if previous_marked and runs:
                runs[-1][1] = max(runs[-1][1], offset[1])
            else:
                runs.append([offset[0], offset[1]])
        previous_marked = bool(is_marked)
    spans: list[RationaleSpan] = []
    for start, end in runs:
        # A run that starts or ends inside a word (a marked sub-word piece) covers the whole word.
        while start > 0 and text[start - 1].isalnum() and text[start].isalnum():
            start -= 1
        while end < len(text) and text[end].isalnum() and text[end - 1].isalnum():
            end += 1
        while start < end and (text[start].isspace() or text[start] in _LEADING_JUNK):
            start += 1
        while end > start and (text[end - 1].isspace() or text[end - 1] in _TRAILING_JUNK):
            end -= 1
        if start >= end:
            continue
        if spans and start <= spans[-1].end:
            start = spans[-1].start
            spans.pop()
        spans.append(RationaleSpan.of(text, start, end))
    return tuple(spans)


def token_runs(labels: Sequence[int]) -> list[tuple[int, int]]:
    """Half-open index ranges of consecutive 1s (used by the IOU-F1 metric)."""
    runs = []
    start = None
    for index, label in enumerate(labels):
        if label == 1 and start is None:
            start = index
        elif label != 1 and start is not None:
            runs.append((start, index))
            start = None
    if start is not None:
        runs.append((start, len(labels)))
    return runs
