"""Replies that are only a greeting, thanks or an acknowledgement show no empathy mechanism.

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
"""

from __future__ import annotations

import re
from dataclasses import replace

from inference.risk.chat_text import normalise_chat
from inference.types import EmpathyLevel, EmpathyResult, Mechanism

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
_ONE_UNIT = re.compile(_UNIT)
_TRAILING_RUN = re.compile(r"(\w)\1+$")  # "heyy", "okk", "lmaoo": normalise_chat leaves two of a kind
_NOT_A_WORD = re.compile(r"[^\w' ]+")
_SPACES = re.compile(r"\s+")


def is_phatic(reply: str) -> bool:
    """True when the reply is nothing but greetings, thanks, acknowledgements or fillers ("hello", "ok thx",
    "hey there!!", "**thanks**"); False for anything else, including a reply that normalises to nothing."""
    words = _SPACES.sub(" ", _NOT_A_WORD.sub(" ", normalise_chat(reply).lower())).split()
    return bool(words) and _PHATIC.fullmatch(" ".join(map(_unstretched, words))) is not None


def _unstretched(word: str) -> str:
    """A stretched word's short form ("heyy" -> "hey") when only that is phatic; "all" and "cool" stay as they are."""
    shorter = _TRAILING_RUN.sub(r"\1", word)
    if shorter != word and _ONE_UNIT.fullmatch(shorter) and not _ONE_UNIT.fullmatch(word):
        return shorter
    return word


def without_mechanisms(result: EmpathyResult) -> EmpathyResult:
    """``result`` with every mechanism at level none and no rationale; the models' probabilities are kept, so
    a reader can still see what they said."""
    cleared = {
        mechanism: replace(score, level=EmpathyLevel.NONE, rationales=())
        for mechanism, score in result.by_mechanism().items()
    }
    return EmpathyResult(
        emotional_reactions=cleared[Mechanism.EMOTIONAL_REACTIONS],
        interpretations=cleared[Mechanism.INTERPRETATIONS],
        explorations=cleared[Mechanism.EXPLORATIONS],
    )
