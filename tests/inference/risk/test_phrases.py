"""The crisis-phrase layer: first-person crisis wording raises; hyperbole, support and recovery do not."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.risk.phrases import (
    DEFAULT_PHRASES_FILE,
    PhraseBook,
    PhraseFileError,
    _find,
    match_crisis_phrases,
    parse_phrase_file,
)


def tiers(text: str) -> set[str]:
    return {match.split(":", 1)[0] for match in match_crisis_phrases(text)}


@pytest.mark.parametrize(
    "text",
    [
        "I'm going to kill myself tonight",
        "i just want to die",
        "I’m thinking about killing myself",  # curly apostrophe
        "nobody would miss me if I was gone",
        "I took all my pills",
        "I DON'T WANT TO BE ALIVE ANYMORE",
        # Issue 13's example of burdensomeness the model misses (attempt 8: P(crisis) 0.78, elevated).
        "they'd be better off with the insurance money",
        "my kids would honestly be better off with my life insurance",
    ],
)
def test_first_person_crisis_wording_is_high(text: str) -> None:
    assert "high" in tiers(text)


@pytest.mark.parametrize(
    "text",
    [
        "this exam is killing me",
        "my feet are killing me",
        "I'm dying of embarrassment",
        "that movie killed me, so funny",
    ],
)
def test_everyday_hyperbole_matches_nothing(text: str) -> None:
    assert match_crisis_phrases(text) == ()


@pytest.mark.parametrize(
    "text",
    [
        "If you're thinking about suicide, please call or text 988.",
        "Please don't hurt yourself. The crisis line is open 24/7.",
        "Nobody here wants you to kill yourself. Can you call the hotline?",
    ],
)
def test_supportive_replies_that_mention_hotlines_match_nothing(text: str) -> None:
    assert match_crisis_phrases(text) == ()


def test_negation_just_before_a_phrase_cancels_it() -> None:
    assert match_crisis_phrases("I would never kill myself, I promise") == ()


def test_recovery_story_in_the_past_does_not_match() -> None:
    assert match_crisis_phrases("Two years ago I tried to kill myself. Now I'm doing well.") == ()


def test_joking_marker_turns_a_high_phrase_into_elevated() -> None:
    assert match_crisis_phrases("ugh I want to die lol") == ("elevated:want_to_die",)


def test_a_drawn_out_joking_marker_softens_like_the_marker() -> None:
    assert match_crisis_phrases("gonna kms if the tickets sell out again lmaooo") == ("elevated:kill_myself",)
    assert match_crisis_phrases("i want to die hahahaha") == ("elevated:want_to_die",)


def test_a_bare_ha_is_not_read_as_laughter() -> None:
    assert match_crisis_phrases("ha. i want to die") == ("high:want_to_die",)


def test_a_hyphen_inside_a_word_separates_words() -> None:
    assert "high" in tiers("I have just self-harmed and I can't stop shaking")


_SPEAKER_BOOK = """
[high]
thinking = been thinking about suicide
harmed = self harmed | cut myself
insurance (any speaker) = better off with the insurance money

[third_person]
he | she | hes | shes | friend | who
"""


@pytest.mark.parametrize(
    "text",
    [
        "my brother told me he's been thinking about suicide, should i tell my parents",
        "a friend self harmed at school today and the teachers handled it badly",
        "the character who self harmed in that show felt so real",
    ],
)
def test_a_speakerless_phrase_about_someone_else_is_cancelled(text: str) -> None:
    assert parse_phrase_file(_SPEAKER_BOOK).matches(text) == ()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("been thinking about suicide a lot this week", "high:thinking"),
        ("she knows i self harmed last night", "high:harmed"),  # the nearer speaker is the writer
        ("lost my job, he left, been thinking about suicide", "high:thinking"),  # a comma ends the clause
        ("after she left cut myself again", "high:harmed"),  # a phrase naming the writer is theirs
        ("honestly they'd be better off with the insurance money", "high:insurance"),  # marked (any speaker)
    ],
)
def test_a_phrase_keeps_the_writer_as_its_speaker(text: str, match: str) -> None:
    assert parse_phrase_file(_SPEAKER_BOOK).matches(text) == (match,)


@pytest.mark.parametrize(
    "text",
    [
        'my friend keeps saying "I\'d be better off dead" as a joke and i dont think it is',
        "> i want to die\nplease don't go anywhere, can you call 988 right now?",
        "\u201ci want to die\u201d is what she wrote on her story",
    ],
)
def test_quoted_words_raise_a_message_to_elevated_at_most(text: str) -> None:
    assert tiers(text) == {"elevated"}


def test_a_message_that_is_nothing_but_a_block_quote_is_the_writer_s_own() -> None:
    assert "high" in tiers("> i want to die")


def test_the_writer_s_own_words_beside_a_quote_still_count() -> None:
    assert "high" in tiers('she texted me "are you ok" and honestly i want to die')


def test_matches_name_their_tier() -> None:
    assert match_crisis_phrases("I want to kill myself") == ("high:kill_myself",)


def test_wildcard_matches_any_one_word() -> None:
    book = parse_phrase_file("[high]\npills = swallowed * pills\n")
    assert book.matches("I swallowed twenty pills") == ("high:pills",)
    assert book.matches("I swallowed pills") == ()


def test_shipped_phrase_file_loads_with_every_section() -> None:
    book = PhraseBook.load(DEFAULT_PHRASES_FILE)
    assert book.phrases and book.negation and book.past and book.joking and book.third_person
    assert any(phrase.any_speaker for phrase in book.phrases)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("kill = kill myself", "before the first"),
        ("[urgent]\nkill = kill myself", "unknown section"),
        ("[high]\nKill Me = kill myself", "snake_case"),
        ("[high]\nburden (some speaker) = better off without me", "snake_case"),
        ("[high]\nkill = kill myself\nkill = end my life", "used twice"),
    ],
)
def test_malformed_phrase_file_is_refused_with_the_line(content: str, message: str) -> None:
    with pytest.raises(PhraseFileError, match=message):
        parse_phrase_file(content)


def test_zero_width_characters_do_not_hide_a_phrase() -> None:
    assert "high" in tiers("I want to ki\u200bll myself".replace("ki\u200bll", "kill\u200b"))


_VOCABULARY = ("i", "want", "to", "die", "kill", "myself", "not", "*")


@given(
    pattern=st.lists(st.sampled_from(_VOCABULARY), min_size=1, max_size=4),
    tokens=st.lists(st.sampled_from(_VOCABULARY[:-1]), max_size=12),
)
@settings(max_examples=400, deadline=None)
def test_finding_a_pattern_agrees_with_comparing_every_window_whole(pattern, tokens) -> None:
    """The matcher compares a pattern's first word before the rest (a speed-up); it must find exactly the starts
    that comparing each whole window finds, wildcards included."""
    size = len(pattern)
    expected = [
        start
        for start in range(len(tokens) - size + 1)
        if all(p == "*" or p == t for p, t in zip(pattern, tokens[start : start + size], strict=True))
    ]
    assert _find(tuple(pattern), tokens) == expected
