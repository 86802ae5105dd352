"""Replies that are only a greeting, thanks or an acknowledgement show no empathy mechanism; a bare "same" shows
at most a weak one.

Why: Sharma et al.'s three mechanisms each need content about the seeker: an expressed feeling for them (ER),
an understanding of what they said (IP), or a question about their experience (EX). "hello" has none. Yet the
Reddit bi-encoders give "hello", "hey" and "ok thx" a weak Emotional Reaction, and the chat recogniser's EX
head (trained on ESConv, whose supporters open with "Hello, how are you?") gives "hello" a weak Exploration,
so the coaching DM praised "hello" for "inviting them to share more" (issue 14). A learned fix needs chat
replies of this kind in training; until then this rule states the definition outright.

The rule is narrow on purpose: every word of the reply (after chat normalisation: case, markup, repeated
letters and punctuation removed) must belong to a short list of greetings, thanks, acknowledgements and
fillers. "same", "me too", "hugs", "i'm here", "how are you?" and any emoji-only reply are *not* phatic: each can
carry a mechanism, and the models decide them.

A **bare echo** ("lol same", "me too!!", "big mood", "felt that tbh") is the second, equally narrow rule: a strong
level needs content specific to the seeker (a named feeling, a specific understanding or shared experience, a
specific question), and an echo has none, so each mechanism keeps its level but never above weak. The Reddit
bi-encoders gave "lol same" a strong Interpretation and the DM praised it for understanding (issue 14). A reply that
says what is the same ("same thing happened to me…") is not a bare echo. An echo also asks nothing, so without a
question mark it shows no Exploration: the chat recogniser gave "same here" a weak one and the DM said it "invites
them to share more".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

from inference.risk.chat_text import normalise_chat
from inference.types import EmpathyLevel, EmpathyResult, Mechanism, MechanismScore

_GREETING = (
    r"(?:hi|hii|hello|hello there|hey|heyy|heya|hiya|howdy|yo|sup|greetings|gm|gn|"
    r"good (?:morning|afternoon|evening|night)|morning|evening|night|bye|goodbye|cya|see (?:you|ya)(?: later)?|later)"
)
_AUDIENCE = r"(?: (?:there|everyone|everybody|all|guys|y'all|yall|folks|friend|friends|mate))?"
_THANKS = (
    r"(?:thanks|thank you|thank u|thanku|thx|thnx|tnx|ty|tysm|tyvm|thanks a lot|thanks so much|"
    r"thank you so much|many thanks|cheers|appreciate it)"
)
_ACKNOWLEDGEMENT = (
    r"(?:ok|okay|okey|okie|oki|k|kk|alright|aight|sure|yes|yeah|yea|ya|yep|yup|no|nope|nah|right|cool|nice|"
    r"great|got it|gotcha|np|no problem|no worries|you're welcome|youre welcome|yw|welcome|will do|noted|"
    r"brb|gtg|wow|oh|ah|hm|hmm|mhm|um|uh|lol|lmao|lmfao|rofl|(?:ha)+h?|(?:he)+h?|xd)"
)
_UNIT = rf"(?:{_GREETING}{_AUDIENCE}|{_THANKS}|{_ACKNOWLEDGEMENT})"
_PHATIC = re.compile(rf"{_UNIT}(?: {_UNIT})*")
_ECHO = (
    r"(?:same|same here|same tho|me too|me as well|relatable|so relatable|mood|big mood|felt|felt that|"
    r"i felt that|i feel that|i feel you|fr|real|too real|so real|literally me)"
)
_HEDGE = r"(?:tbh|ngl|honestly|literally|lowkey|omg)"
_FILLER = rf"(?:{_UNIT}|{_HEDGE})"
_BARE_ECHO = re.compile(rf"(?:{_FILLER} )*{_ECHO}(?: (?:{_ECHO}|{_FILLER}))*")
_ONE_WORD = re.compile(rf"{_FILLER}|{_ECHO}")
_TRAILING_RUN = re.compile(r"(\w)\1+$")  # "heyy", "okk", "lmaoo": normalise_chat leaves two of a kind
_NOT_A_WORD = re.compile(r"[^\w' ]+")
_SPACES = re.compile(r"\s+")


def is_phatic(reply: str) -> bool:
    """True when the reply is nothing but greetings, thanks, acknowledgements or fillers ("hello", "ok thx",
    "hey there!!", "**thanks**"); False for anything else, including a reply that normalises to nothing."""
    return _PHATIC.fullmatch(_words(reply)) is not None


def is_bare_echo(reply: str) -> bool:
    """True when the reply only echoes shared experience, perhaps among fillers ("lol same", "me too!!", "big mood",
    "felt that tbh"); False for a phatic reply (an echo needs at least one echo word, which no phatic unit is) and
    for one that says what is the same."""
    return _BARE_ECHO.fullmatch(_words(reply)) is not None


def by_definition(result: EmpathyResult, reply: str) -> EmpathyResult:
    """``result`` with the two stated definitions applied: a phatic reply shows no mechanism, a bare echo none
    above weak; any other reply is the models' to judge and comes back unchanged. The reply is normalised once:
    this runs for every scored reply."""
    words = _words(reply)
    if _PHATIC.fullmatch(words):
        return without_mechanisms(result)
    if _BARE_ECHO.fullmatch(words):
        # An echo asks nothing, so no Exploration, unless it carries a question mark ("same??" may be asking).
        return at_most_weak(result) if "?" in reply else without_exploration(at_most_weak(result))
    return result


def _words(reply: str) -> str:
    """The reply's words after chat normalisation, lower case, one space apart, stretched fillers shortened."""
    words = _SPACES.sub(" ", _NOT_A_WORD.sub(" ", normalise_chat(reply).lower())).split()
    return " ".join(map(_unstretched, words))


def _unstretched(word: str) -> str:
    """A stretched word's short form ("heyy" -> "hey", "samee" -> "same") when only that is on a list; "all" and
    "cool" stay as they are."""
    shorter = _TRAILING_RUN.sub(r"\1", word)
    if shorter != word and _ONE_WORD.fullmatch(shorter) and not _ONE_WORD.fullmatch(word):
        return shorter
    return word


def without_mechanisms(result: EmpathyResult) -> EmpathyResult:
    """``result`` with every mechanism at level none and no rationale; the models' probabilities are kept, so
    a reader can still see what they said."""
    return _each_mechanism(result, lambda score: replace(score, level=EmpathyLevel.NONE, rationales=()))


def without_exploration(result: EmpathyResult) -> EmpathyResult:
    """``result`` with Explorations at level none and no rationale (probabilities kept); the rest unchanged."""
    return _each_mechanism(
        result,
        lambda score: (
            replace(score, level=EmpathyLevel.NONE, rationales=())
            if score.mechanism is Mechanism.EXPLORATIONS
            else score
        ),
    )


def at_most_weak(result: EmpathyResult) -> EmpathyResult:
    """``result`` with every strong level lowered to weak (rationales and probabilities kept)."""
    return _each_mechanism(result, lambda score: replace(score, level=min(score.level, EmpathyLevel.WEAK)))


def _each_mechanism(
    result: EmpathyResult, change: Callable[[MechanismScore], MechanismScore]
) -> EmpathyResult:
    changed = {mechanism: change(score) for mechanism, score in result.by_mechanism().items()}
    return EmpathyResult(
        emotional_reactions=changed[Mechanism.EMOTIONAL_REACTIONS],
        interpretations=changed[Mechanism.INTERPRETATIONS],
        explorations=changed[Mechanism.EXPLORATIONS],
    )
