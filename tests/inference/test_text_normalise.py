"""The one text normaliser: invisible, bidi, tag and format characters neither hide a crisis phrase nor make
an empty-looking message scorable."""

from __future__ import annotations

import re

import pytest

from bot.services.reply_scoring import content_hash, has_scorable_text
from bot.services.seeker_risk import excerpt
from inference.engine import prepare_text
from inference.errors import InputRejected
from inference.risk.phrases import DEFAULT_PHRASES_FILE, PhraseBook, match_crisis_phrases
from inference.text_normalise import has_visible_text, invisible_characters, visible_text

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
TAGS = "".join(map(chr, range(0xE0000, 0xE0080)))
SAMPLE = (
    "\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u180e\u034f\u3164\u2800\ufe0f" + BIDI + TAGS
)


def _phrase_lines() -> list[tuple[str, str]]:
    """(name, phrase) of every [high] and [elevated] phrase in the shipped file, "*" filled with a word."""
    book = PhraseBook.load(DEFAULT_PHRASES_FILE)
    return [
        (phrase.name, " ".join("really" if word == "*" else word for word in pattern))
        for phrase in book.phrases
        for pattern in phrase.patterns
    ]


PHRASES = _phrase_lines()


def _names(text: str) -> set[str]:
    return {match.split(":", 1)[1] for match in match_crisis_phrases(text)}


def test_the_phrase_file_is_read() -> None:
    assert len(PHRASES) > 100
    assert all(name in _names(phrase) for name, phrase in PHRASES)


def test_every_invisible_character_is_known_to_the_normaliser() -> None:
    assert set(SAMPLE) <= invisible_characters()


@pytest.mark.parametrize(("name", "phrase"), PHRASES, ids=[f"{n}:{p}" for n, p in PHRASES])
def test_every_phrase_matches_with_an_invisible_character_inserted_anywhere(name: str, phrase: str) -> None:
    """Each position of the phrase gets an invisible character; the characters rotate through the sample."""
    for position in range(1, len(phrase)):
        char = SAMPLE[(position * 7 + len(phrase)) % len(SAMPLE)]
        hidden = phrase[:position] + char + phrase[position:]
        assert name in _names(hidden), (name, position, hex(ord(char)))


@pytest.mark.parametrize("char", sorted(invisible_characters()), ids=lambda c: hex(ord(c)))
def test_each_invisible_character_hides_no_phrase(char: str) -> None:
    assert "kill_myself" in _names(f"i want to ki{char}ll my{char}self")
    assert "kill_myself" in _names(f"kill{char}myself")  # in place of the space
    assert "want_to_die" in _names(f"{char}i want to die{char}")


def test_invisible_times_between_words_reads_as_a_space() -> None:
    assert "high:kill_myself" in match_crisis_phrases("kill\u2062myself")


@pytest.mark.parametrize("filler", [BIDI, TAGS, "\u202e\u2066\u2069", "\U000e0041\U000e0042", "\u3164\u2800"])
def test_bidi_and_tag_characters_alone_are_not_scorable(filler: str) -> None:
    assert not has_visible_text(filler + " \n")
    assert not has_scorable_text(filler)
    with pytest.raises(InputRejected):
        prepare_text(filler, what="reply")


def test_visible_text_keeps_what_a_reader_sees() -> None:
    assert visible_text("\u202ehello\u2069 ") == "hello"
    assert has_visible_text("ok\U000e0041")


def test_an_edit_that_only_adds_invisible_characters_is_not_material() -> None:
    assert content_hash("That sounds hard") == content_hash("That\u202e sounds\u2066 hard\U000e0020")


def test_alert_excerpt_carries_no_bidi_override() -> None:
    cut = excerpt("please \u202eesrever\u202c read this")
    assert not re.search("[\u202a-\u202e\u2066-\u2069]", cut)


_MARKUP = ("**", "*", "***", "__", "||", "~~", "`")


@pytest.mark.parametrize(("name", "phrase"), PHRASES, ids=[f"{n}:{p}" for n, p in PHRASES])
def test_every_phrase_matches_with_discord_markup_around_any_of_its_words(name: str, phrase: str) -> None:
    """Bold, italics, underline, strike-through, a spoiler or code around one word is how Discord dresses it;
    the word is still there (issue 13: markup must not move a message across tiers by itself)."""
    words = phrase.split()
    for index, word in enumerate(words):
        marker = _MARKUP[(index + len(phrase)) % len(_MARKUP)]
        dressed = " ".join([*words[:index], f"{marker}{word}{marker}", *words[index + 1 :]])
        assert name in _names(dressed), (name, dressed)


@pytest.mark.parametrize("marker", _MARKUP)
def test_discord_markup_hides_no_cue_word(marker: str) -> None:
    """A past, negation or third-person cue in bold still cancels, as it does plain."""
    assert not _names(f"{marker}6 months{marker} without hurting myself. proud of me")
    assert not _names(f"i would {marker}never{marker} kill myself")
    assert not _names(f"{marker}my brother{marker} says he's been thinking about suicide")


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("i want to dieeee", "want_to_die"),
        ("i wanna dieeeeee", "want_to_die"),
        ("gonna kill myselffff tonight", "kill_myself"),
        ("im gonna killll myself", "kill_myself"),
    ],
)
def test_drawn_out_letters_hide_no_phrase(text: str, name: str) -> None:
    """Chat draws words out ("dieeee"); the floor reads the word it draws out, as the head does."""
    assert name in _names(text)


def test_drawn_out_letters_still_read_as_laughter_and_nothing_else() -> None:
    assert match_crisis_phrases("kms lmaooooo") == ("elevated:kill_myself",)
    assert not _names("sooooo tired of this weeeeek")
