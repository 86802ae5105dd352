"""Greeting/thanks/acknowledgement-only replies show no mechanism; anything with content is left to the models."""

from __future__ import annotations

import pytest

from inference.empathy.phatic import is_phatic
from inference.empathy.scorer import EmpathyScorer
from inference.types import EmpathyLevel, Mechanism
from tests.support.tiny_empathy import build_tiny_empathy_models

PHATIC = [
    "hello",
    "Hey!!",
    "heyyyy",
    "hey there :)",
    "hello everyone",
    "good morning!",
    "ok thx",
    "okkkk",
    "**thanks**",
    "thank you so much!!",
    "<@123456789012345678> hi",
    "yeah ok cool",
    "lmaooo",
    "hahaha",
    "You're welcome! Bye",
    "no problem",
]
NOT_PHATIC = [
    "lol same",  # a disclosure: the models decide
    "same",
    "me too",
    "hugs",
    "i'm here",
    "❤️",  # normalises to nothing: not phatic, the models decide
    "hi, how are you?",
    "Hi there. How are you doing today?",
    "thank you for telling me",
    "ok i understand",
    "yes i agree, that sounds exhausting",
    "nope not really",
    "good",
    "",
]


@pytest.mark.parametrize("reply", PHATIC)
def test_greetings_thanks_and_acknowledgements_are_phatic(reply: str) -> None:
    assert is_phatic(reply)


@pytest.mark.parametrize("reply", NOT_PHATIC)
def test_replies_with_content_are_not_phatic(reply: str) -> None:
    assert not is_phatic(reply)


@pytest.fixture(scope="module")
def scorer(tmp_path_factory) -> EmpathyScorer:
    return EmpathyScorer.load(build_tiny_empathy_models(tmp_path_factory.mktemp("phatic")))


def test_the_scorer_gives_a_phatic_reply_no_level_and_keeps_the_models_probabilities(scorer, seekers) -> None:
    replies = ["hello", "That sounds really hard. What happened?"]
    encodings = scorer.encode_seekers(seekers[:1] * 2)
    raw = {m: scorer._score_mechanism(m, encodings, replies) for m in Mechanism}
    greeting, answer = scorer.score(encodings, replies)
    for mechanism, score in greeting.by_mechanism().items():
        assert score.level is EmpathyLevel.NONE and score.rationales == ()
        assert score.probabilities == raw[mechanism][0].probabilities
    for mechanism, score in answer.by_mechanism().items():
        assert score.level == raw[mechanism][1].level
