"""Greeting/thanks/acknowledgement-only replies show no mechanism; a bare "same" none above weak; anything with
content is left to the models."""

from __future__ import annotations

import pytest

from inference.empathy.phatic import by_definition, is_bare_echo, is_phatic
from inference.empathy.scorer import EmpathyScorer
from inference.types import EmpathyLevel, EmpathyResult, Mechanism, MechanismScore, RationaleSpan
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
    "lol same",  # a bare echo: at most weak (is_bare_echo), not phatic
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


BARE_ECHOES = [
    "lol same",
    "same",
    "SAME 😭",
    "samee",
    "me too!!",
    "same here",
    "big mood",
    "felt that tbh",
    "ngl same",
]
NOT_BARE_ECHOES = [
    "same thing happened to me when i transferred, i felt so lost for months",
    "same, it sucks so much when that happens",
    "ngl same, i'm always the one reaching out",
    "ok thx",  # phatic: no mechanism at all
    "so sad",
    "this",
    "",
]


@pytest.mark.parametrize("reply", BARE_ECHOES)
def test_an_echo_of_shared_experience_alone_is_a_bare_echo(reply: str) -> None:
    assert is_bare_echo(reply)


@pytest.mark.parametrize("reply", NOT_BARE_ECHOES)
def test_a_reply_that_says_what_is_the_same_is_not_a_bare_echo(reply: str) -> None:
    assert not is_bare_echo(reply)


@pytest.mark.parametrize("reply", PHATIC)
def test_a_phatic_reply_is_never_also_a_bare_echo(reply: str) -> None:
    """The two rules never overlap: a bare echo needs an echo word, and none is on the phatic list."""
    assert not is_bare_echo(reply)


def _all_strong() -> EmpathyResult:
    def strong(mechanism: Mechanism) -> MechanismScore:
        span = RationaleSpan(0, len("lol same"), "lol same")
        return MechanismScore(mechanism, EmpathyLevel.STRONG, (0.0, 0.1, 0.9), (span,))

    return EmpathyResult(*(strong(mechanism) for mechanism in Mechanism))


def test_a_bare_echo_keeps_its_levels_but_none_above_weak() -> None:
    echoed = by_definition(_all_strong(), "lol same")
    # Explorations are not here: an echo asks nothing (test_a_bare_echo_without_a_question_shows_no_exploration).
    for mechanism in (Mechanism.EMOTIONAL_REACTIONS, Mechanism.INTERPRETATIONS):
        score, before = echoed.by_mechanism()[mechanism], _all_strong().by_mechanism()[mechanism]
        assert score.level is EmpathyLevel.WEAK
        assert (score.rationales, score.probabilities) == (before.rationales, before.probabilities)
    assert by_definition(_all_strong(), "same thing happened to me last year") == _all_strong()
    assert all(
        s.level is EmpathyLevel.NONE for s in by_definition(_all_strong(), "ok thx").by_mechanism().values()
    )


def test_a_bare_echo_without_a_question_shows_no_exploration() -> None:
    echoed = by_definition(_all_strong(), "same here")
    assert echoed.explorations.level is EmpathyLevel.NONE and echoed.explorations.rationales == ()
    assert echoed.explorations.probabilities == _all_strong().explorations.probabilities
    assert echoed.interpretations.level is EmpathyLevel.WEAK  # sharing the experience is still understanding
    # With a question mark the echo may be asking ("same??"): the models decide, never above weak.
    assert by_definition(_all_strong(), "same??").explorations.level is EmpathyLevel.WEAK


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
