"""The canonical coaching set (written by an independent session): the shipped models and the chat recogniser
see each reply's mechanism, and the coaching DM never asks for what the reply already does.

Never train or tune on tests/data/coaching_canonical_independent.csv; it is only scored here.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from bot.services.coaching import _NEXT_STEPS, CoachingNote, ReplyForCoaching, compose_note
from inference.types import EmpathyResult, Mechanism, ReplyScore, RiskResult, RiskTier

pytestmark = pytest.mark.slow

CANONICAL = Path(__file__).resolve().parents[2] / "data" / "coaching_canonical_independent.csv"
HIT_RATE_TARGET = 0.90


def _rows() -> list[dict[str, str]]:
    with CANONICAL.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def shipped_scorer():
    from inference.config import shipped_empathy_sources
    from inference.empathy.scorer import EmpathyScorer

    return EmpathyScorer.load(shipped_empathy_sources(), recogniser="shipped:empathy-chat")


def _coached(scorer, seekers: list[str], replies: list[str]) -> list[tuple[EmpathyResult, CoachingNote]]:
    """Each reply's scores and the coaching DM its responder would get."""
    out = []
    for index, (result, reply) in enumerate(zip(scorer.score_pairs(seekers, replies), replies, strict=True)):
        score = ReplyScore(index, index, result, RiskResult({}, RiskTier.NONE))
        out.append((result, compose_note(ReplyForCoaching.from_score(score, reply))))
    return out


@pytest.fixture(scope="module")
def scored(shipped_scorer) -> list[tuple[dict[str, str], EmpathyResult, CoachingNote]]:
    rows = _rows()
    coached = _coached(shipped_scorer, [r["seeker"] for r in rows], [r["reply"] for r in rows])
    return [(row, result, note) for row, (result, note) in zip(rows, coached, strict=True)]


def _hit(row: dict[str, str], result: EmpathyResult) -> bool:
    levels = {m.value: int(s.level) for m, s in result.by_mechanism().items()}
    if row["expected"] == "none":
        return not any(levels.values())
    return levels[row["expected"]] > 0


def test_the_canonical_set_has_every_kind() -> None:
    kinds = {row["kind"] for row in _rows()}
    assert {"reflection", "paraphrase", "feeling_words", "open_question", "advice_only"} <= kinds


def test_most_canonical_replies_get_their_expected_mechanism(scored) -> None:
    # Measured 0.978 with attempt 3's IP head (misses adv-08, adv-11: advice raised to a weak mechanism).
    hits = [_hit(row, result) for row, result, _ in scored]
    rate = sum(hits) / len(hits)
    misses = [row["id"] for (row, _, _), hit in zip(scored, hits, strict=True) if not hit]
    assert rate >= HIT_RATE_TARGET, f"{rate:.3f}; misses: {misses}"


def test_no_coaching_dm_suggests_the_mechanism_the_reply_already_shows(scored) -> None:
    contradictions = []
    for row, _, note in scored:
        if row["expected"] == "none":
            continue
        expected = Mechanism(row["expected"])
        steps = _NEXT_STEPS[expected]
        if note.next_step_for is expected or any(step in note.text for step in steps):
            contradictions.append(row["id"])
    assert not contradictions, f"DMs asking for what the reply already does: {contradictions}"


HOLIDAY_SEEKER = (
    "A bit overwhelmed and depressed. I really want to celebrate the holiday, but i'm just not in the mood."
)
HOLIDAY_REPLY = (
    "It sounds like you feel let down that the holiday isn't bringing you the joy you hoped for, "
    "and that must feel lonely."
)


@pytest.fixture(scope="module")
def holiday(shipped_scorer) -> tuple[EmpathyResult, CoachingNote]:
    (coached,) = _coached(shipped_scorer, [HOLIDAY_SEEKER], [HOLIDAY_REPLY])
    return coached


def test_the_holiday_reflection_from_issue_14_is_not_coached_back(holiday) -> None:
    _, note = holiday
    assert note.next_step_for is not Mechanism.INTERPRETATIONS
    assert not any(step in note.text for step in _NEXT_STEPS[Mechanism.INTERPRETATIONS])


def test_the_holiday_reflection_from_issue_14_shows_an_interpretation(holiday) -> None:
    # Attempt 3's IP head (tuned encoder): recogniser probability 0.90 >= its cut-off 0.48.
    result, _ = holiday
    assert result.interpretations.level > 0


# Replies a responder types in passing. Before inference/empathy/phatic.py the bi-encoders gave "hello", "hey",
# "good morning!" and "ok thx" a weak Emotional Reaction and the chat recogniser gave "hello" a weak Exploration,
# so the DM praised "hello" for "inviting them to share more".
GREETINGS_AND_THANKS = [
    "hello",
    "hey",
    "hey there!!",
    "good morning!",
    "ok thx",
    "thank you so much",
    "yeah ok",
]


def test_a_greeting_or_thanks_earns_no_praise_in_the_coaching_dm(shipped_scorer) -> None:
    seeker = "i feel like nobody at school even notices me anymore"
    coached = _coached(shipped_scorer, [seeker] * len(GREETINGS_AND_THANKS), GREETINGS_AND_THANKS)
    praised = {reply: note.praised for reply, (_, note) in zip(GREETINGS_AND_THANKS, coached, strict=True)}
    assert not any(praised.values()), praised
    assert all(not any(s.level for s in result.by_mechanism().values()) for result, _ in coached)


# A bare echo of shared experience (issue 14: "lol same" got a strong Interpretation and the DM praised it for
# understanding how they feel). inference/empathy/phatic.py keeps its level but never above weak.
BARE_ECHOES = ["lol same", "same here", "me too!!", "big mood"]


def test_a_bare_same_is_never_a_strong_mechanism_in_the_coaching_dm(shipped_scorer) -> None:
    seeker = "i failed my driving test again today, feel like an idiot"
    coached = _coached(shipped_scorer, [seeker] * len(BARE_ECHOES), BARE_ECHOES)
    strong = {
        reply: [m.value for m, s in result.by_mechanism().items() if s.level > 1]
        for reply, (result, _) in zip(BARE_ECHOES, coached, strict=True)
    }
    assert not any(strong.values()), strong
    assert not any("a strong" in note.text for _, note in coached)


def test_a_bare_echo_is_never_praised_as_an_exploration(shipped_scorer) -> None:
    """Issue 14: "same here" got a weak Exploration from the chat recogniser, and the DM said it "invites them to share
    more". An echo asks nothing (docs/models/empathy-chat-recogniser-protocol.md, third amendment)."""
    seeker = "i failed my driving test again today, feel like an idiot"
    coached = _coached(shipped_scorer, [seeker] * len(BARE_ECHOES), BARE_ECHOES)
    explored = {
        reply: result.explorations.level.name
        for reply, (result, _) in zip(BARE_ECHOES, coached, strict=True)
        if result.explorations.level
    }
    assert explored == {}
    assert not any("Exploration" in note.text.split("One thing to try")[0] for _, note in coached)
