"""Rationale spans: token predictions back to merged character spans of the original reply."""

from __future__ import annotations

import pytest

from inference.empathy.scorer import EmpathyScorer
from inference.empathy.text import (
    IGNORE,
    Tokenized,
    lowercase_with_origins,
    merge_token_spans,
    original_span,
    rationale_char_spans,
    token_rationale_labels,
    tokenize,
)
from inference.types import EmpathyLevel, RationaleSpan
from tests.support.tiny_empathy import build_tiny_empathy_models, tiny_tokenizer


def tokens_of(text: str) -> Tokenized:
    return tokenize(tiny_tokenizer(), [text], max_length=64)[0]


def test_adjacent_marked_tokens_merge_into_one_span_of_the_original_text() -> None:
    text = "I am so sorry. Are you okay?"
    tokens = tokens_of(text)
    marked = [
        offset is not None and text[offset[0] : offset[1]] in ("so", "sorry") for offset in tokens.offsets
    ]
    assert sum(marked) == 2
    assert merge_token_spans(text, tokens, marked) == (RationaleSpan(5, 13, "so sorry"),)


def test_separate_runs_stay_separate_spans() -> None:
    text = "so sorry and are you okay"
    tokens = tokens_of(text)
    words = [offset and text[offset[0] : offset[1]] for offset in tokens.offsets]
    marked = [w in ("so", "sorry", "okay") for w in words]
    spans = merge_token_spans(text, tokens, marked)
    assert [s.text for s in spans] == ["so sorry", "okay"]
    assert all(text[s.start : s.end] == s.text for s in spans)


def test_emoji_and_non_ascii_come_back_exactly_as_written() -> None:
    text = "Ça va? Je suis désolée 💙 vraiment"
    tokens = tokens_of(text)
    spans = merge_token_spans(text, tokens, [True] * len(tokens.input_ids))
    assert spans == (RationaleSpan(0, len(text), text),)


def test_span_inside_emoji_text_keeps_character_offsets() -> None:
    text = "💙💙 I hear you, that's heavy"
    tokens = tokens_of(text)
    marked = [
        offset is not None and text[offset[0] : offset[1]] in ("hear", "you") for offset in tokens.offsets
    ]
    (span,) = merge_token_spans(text, tokens, marked)
    assert span.text == "hear you"
    assert text[span.start : span.end] == "hear you"


def test_text_past_the_64_token_window_gets_no_span() -> None:
    text = " ".join(["okay"] * 100) + " the end"
    tokens = tokens_of(text)
    assert len(tokens.input_ids) == 64
    (span,) = merge_token_spans(text, tokens, [True] * 64)
    assert span.start == 0
    assert span.end == 62 * len("okay ") - 1  # 62 words fit between [CLS] and [SEP]
    assert "the end" not in span.text


def test_rationale_pieces_are_found_by_exact_substring() -> None:
    response = "Wow (really) that is hard. I'm sorry [sic] you went through that."
    assert rationale_char_spans(response, "that is hard|I'm sorry [sic]") == [(13, 25), (27, 42)]


def test_rationale_piece_that_is_not_in_the_response_is_skipped() -> None:
    assert rationale_char_spans("I hear you.", "nothing like it|hear you") == [(2, 10)]


def test_token_labels_mark_overlapping_tokens_and_ignore_special_tokens() -> None:
    text = "I hear you. Stay strong"
    tokens = tokens_of(text)
    labels = token_rationale_labels(tokens, [(2, 10)], all_if_none=True)
    words = [offset and text[offset[0] : offset[1]] for offset in tokens.offsets]
    assert labels[0] == IGNORE and labels[-1] == IGNORE
    assert [w for w, label in zip(words, labels, strict=True) if label == 1] == ["hear", "you"]


def test_rows_without_rationales_label_every_token_when_asked() -> None:
    tokens = tokens_of("hear you")  # two words, two tokens ("ok thanks" was two only as [UNK] [UNK])
    assert token_rationale_labels(tokens, [], all_if_none=True)[1:-1] == [1, 1]
    assert token_rationale_labels(tokens, [], all_if_none=False)[1:-1] == [0, 0]


def test_lowercasing_is_upstreams_and_maps_back_to_the_original() -> None:
    text = "İstanbul IS Big"
    lowered, origins = lowercase_with_origins(text)
    assert lowered == text.lower() == "i\u0307stanbul is big"
    # "i" and the combining dot both come from "İ"; "is" (lowered 10-12) is "IS" (9-11) in the original.
    assert origins[:3] == [0, 0, 1]
    assert text[slice(*original_span((10, 12), origins, len(text)))] == "IS"


@pytest.fixture(scope="module")
def highlighting_scorers(tmp_path_factory) -> dict[int, EmpathyScorer]:
    folder = tmp_path_factory.mktemp("forced")
    return {
        level: EmpathyScorer.load(
            build_tiny_empathy_models(folder / str(level), force_levels=level, all_rationale=True)
        )
        for level in (0, 2)
    }


def test_replies_scored_level_0_get_no_highlights(highlighting_scorers) -> None:
    (result,) = highlighting_scorers[0].score_pairs(["I feel awful."], ["I hear you 💙"])
    for score in result.by_mechanism().values():
        assert score.level == EmpathyLevel.NONE
        assert score.rationales == ()


def test_replies_scored_above_0_get_their_marked_text_highlighted(highlighting_scorers) -> None:
    reply = "  I hear you 💙, ça va?  "
    (result,) = highlighting_scorers[2].score_pairs(["I feel awful."], [reply])
    for score in result.by_mechanism().values():
        assert score.level == EmpathyLevel.STRONG
        assert score.rationales == (RationaleSpan(2, len(reply) - 2, reply.strip()),)


def test_a_marked_word_piece_highlights_the_whole_word() -> None:
    text = "I understand"
    tokens = tokens_of("I understand")
    pieces = [offset and text[offset[0] : offset[1]] for offset in tokens.offsets]
    # Mark only the first piece of the longest word, whatever the vocabulary splits it into.
    marked = [False] * len(pieces)
    marked[2] = True
    assert merge_token_spans(text, tokens, marked) == (RationaleSpan(2, 12, "understand"),)


def test_stray_punctuation_at_span_edges_is_trimmed() -> None:
    text = "Oh, I am sorry, truly"
    tokens = tokens_of(text)
    words = [offset and text[offset[0] : offset[1]] for offset in tokens.offsets]
    marked = [w in (",", "i", "I", "am", "sorry") for w in words]
    spans = merge_token_spans(text, tokens, marked)
    assert [s.text for s in spans] == ["I am sorry"]
