"""The coaching note composer: praise grounded in the reply's own words, one next step, nothing else."""

from __future__ import annotations

import re

import pytest

from bot.services.coaching import (
    DISCORD_MESSAGE_LIMIT,
    ReplyForCoaching,
    compose_digest,
    compose_first_contact,
    compose_invitation,
    compose_note,
    merge_spans,
    weakest_mechanism,
)
from inference.types import Mechanism

ER, IP, EX = Mechanism.EMOTIONAL_REACTIONS, Mechanism.INTERPRETATIONS, Mechanism.EXPLORATIONS
TEXT = "That sounds exhausting. I'm here for you."


def _reply(levels: tuple[int, int, int], spans=None, text: str | None = TEXT, url: str | None = None):
    return ReplyForCoaching(dict(zip((ER, IP, EX), levels, strict=True)), spans or {}, text, url)


def test_note_quotes_the_rationale_span_and_names_the_mechanism() -> None:
    note = compose_note(_reply((0, 1, 0), {IP: [(0, 22)]}))
    assert "“That sounds exhausting” shows you understood how they feel — an Interpretation." in note.text
    assert note.praised == (IP,)


def test_token_level_spans_are_quoted_as_one_phrase() -> None:
    assert merge_spans([(0, 4), (5, 11), (12, 22)], TEXT) == [(0, 22)]
    note = compose_note(_reply((0, 1, 0), {IP: [(0, 4), (5, 11), (12, 22)]}))
    assert "“That sounds exhausting”" in note.text


def test_missing_exploration_suggests_an_open_question() -> None:
    note = compose_note(_reply((1, 1, 0)))
    assert note.next_step_for is EX
    assert "open question" in note.text


def test_missing_emotional_reaction_suggests_naming_a_feeling() -> None:
    note = compose_note(_reply((0, 2, 1)))
    assert note.next_step_for is ER
    assert "naming the feeling" in note.text


def test_missing_interpretation_suggests_reflecting_back() -> None:
    note = compose_note(_reply((2, 0, 2)))
    assert note.next_step_for is IP
    assert "reflecting back" in note.text


def test_ties_suggest_exploration_first() -> None:
    assert weakest_mechanism({ER: 1, IP: 1, EX: 1}) is EX


def test_all_strong_reply_gets_encouragement_not_a_fix() -> None:
    note = compose_note(_reply((2, 2, 2)))
    assert note.next_step_for is None
    assert "all three" in note.text


def test_reply_with_no_empathy_is_thanked_without_invented_praise() -> None:
    note = compose_note(_reply((0, 0, 0)))
    assert note.praised == ()
    assert "did well" not in note.text


def test_expired_text_praises_without_quoting() -> None:
    note = compose_note(_reply((2, 0, 0), {ER: [(0, 22)]}, text=None))
    assert "“" not in note.text.split("**One thing to try:**")[0]
    assert "a strong Emotional Reaction" in note.text


def test_note_links_to_the_reply() -> None:
    url = "https://discord.com/channels/1/2/3"
    assert url in compose_note(_reply((1, 1, 1), url=url)).text


@pytest.mark.parametrize("levels", [(0, 0, 0), (1, 2, 0), (2, 2, 2), (0, 1, 2)])
def test_note_never_mentions_risk_or_diagnoses(levels: tuple[int, int, int]) -> None:
    text = compose_note(_reply(levels, {ER: [(0, 4)]})).text.lower()
    for word in ("risk", "suicid", "self-harm", "depress", "diagnos", "disorder", "crisis", "alert"):
        assert word not in text


def test_quoted_markdown_cannot_format_or_ping() -> None:
    text = "**you** are _so_ right @everyone"
    note = compose_note(_reply((1, 0, 0), {ER: [(0, len(text))]}, text=text))
    assert "\\*\\*you\\*\\*" in note.text
    assert "\\_so\\_" in note.text


def test_long_reply_quote_is_trimmed_and_note_fits_a_message() -> None:
    text = "word " * 2000
    note = compose_note(_reply((1, 1, 1), {ER: [(0, len(text))], IP: [(0, len(text))]}, text=text))
    assert len(note.text) <= DISCORD_MESSAGE_LIMIT
    assert re.search(r"“(word ){5,}", note.text) and "…”" in note.text


def test_digest_has_a_line_per_reply_and_one_next_step() -> None:
    replies = [
        _reply((1, 0, 0), {ER: [(0, 22)]}, url=f"https://discord.com/channels/1/2/{i}") for i in range(3)
    ]
    note = compose_digest(replies)
    assert note.text.count("https://discord.com/channels/1/2/") == 3
    assert note.text.count("One thing to try") == 1
    assert "3 replies" in note.text
    assert note.next_step_for is EX


def test_digest_of_many_replies_shows_a_few_and_counts_the_rest() -> None:
    note = compose_digest([_reply((1, 1, 1)) for _ in range(9)])
    assert "…and 4 more." in note.text
    assert len(note.text) <= DISCORD_MESSAGE_LIMIT


def test_invitation_explains_the_notes_and_how_to_stop() -> None:
    text = compose_invitation("Calm *Corner*")
    assert "Calm \\*Corner\\*" in text
    assert "/peercare coaching off" in text
    assert "private" in text


def test_first_contact_note_says_who_is_writing_then_the_note() -> None:
    note = compose_note(_reply((1, 1, 0)))
    text = compose_first_contact("Calm Corner", note)
    assert text.startswith("Hi! The moderators of **Calm Corner** use PeerCare")
    assert text.endswith(note.text)


def test_a_rationale_over_two_sentences_quotes_the_one_that_fits_each_mechanism() -> None:
    text = "That sounds exhausting. Do you want to talk about what happened?"
    whole = [(0, len(text))]
    note = compose_note(_reply((1, 0, 2), {ER: whole, EX: whole}, text=text))
    assert "“That sounds exhausting.” shows warmth" in note.text
    assert "“Do you want to talk about what happened?” invites them to share more" in note.text
