"""The SHIPPED risk model on the Discord-style regression set: crises reach the high tier, chat does not."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from inference.risk.evaluate import needs_moderator_metrics
from inference.risk.scorer import RiskScorer
from inference.types import RiskTier

REGRESSION_SET = Path(__file__).resolve().parents[2] / "data" / "risk_discord_style.csv"


@pytest.fixture(scope="module")
def report() -> dict:
    frame = pd.read_csv(REGRESSION_SET)
    scorer = RiskScorer.load("shipped:risk")
    return needs_moderator_metrics(scorer.predict(frame["text"].tolist()), frame["needs_moderator"].tolist())


def test_regression_set_is_realistic_in_size(report) -> None:
    assert report["n"] >= 60 and report["n_positive"] >= 20 and report["n_negative"] >= 40


def test_high_tier_catches_at_least_90_percent_of_crises(report) -> None:
    assert report["recall_high"] >= 0.9


def test_high_tier_false_alarms_stay_at_most_15_percent(report) -> None:
    assert report["false_alarm_rate"] <= 0.15


# -- issue 13: the crisis head on chat it never trained on --------------------------------------------------

SUITE = Path(__file__).resolve().parents[2] / "data" / "risk_suite_independent.csv"
ORDINARY_CHAT = [
    "hello",
    "ok",
    "ok thx",
    "lol same",
    "Hi, how goes?",
    "thanks so much",
    "yeah",
    "k",
    "👍",
    "hey!!",
]


def _known_miss(value, reason: str):
    """A parametrized case the shipped head is known to get wrong: a strict xfail, so fixing it is noticed."""
    return pytest.param(value, marks=pytest.mark.xfail(strict=True, reason=reason))


def _meets_the_recall_target(report: dict) -> bool:
    """Issue 13's target for a crisis suite: recall >= 0.95 overall and >= 0.9 in every category."""
    return report["crisis_recall"] >= 0.95 and report["crisis_recall_worst_category"] >= 0.9


@pytest.fixture(scope="module")
def shipped() -> RiskScorer:
    return RiskScorer.load("shipped:risk")


@pytest.fixture(scope="module")
def suite(shipped) -> dict:
    from inference.risk.chat_eval import evaluate_suite

    return evaluate_suite(shipped, SUITE)


def test_shipped_model_decides_high_by_the_crisis_head(shipped) -> None:
    assert shipped.crisis is not None
    assert set(shipped.default_thresholds.high) == {"crisis"}


def test_greetings_and_short_answers_never_reach_high(shipped) -> None:
    assert [r.tier.value for r in shipped.predict(ORDINARY_CHAT)] == ["none"] * len(ORDINARY_CHAT)


# Waking-up greetings: "woke up" is learned from passive ideation ("wish i never woke up") and attempts ("woke up in
# hospital"); nothing in the training pool says a morning greeting is ordinary. Found by the fifth suite.
@pytest.mark.parametrize(
    "text",
    [
        "morning, just woke up",  # attempt 8 put it at high (P(crisis) 0.985); attempt 16 elevated (0.488)
        "jus woke up",  # the fifth suite's; attempt 8 at high (0.994), attempt 16 elevated (0.749)
        "i woke up late lol",
    ],
)
def test_a_morning_greeting_does_not_reach_high(shipped, text: str) -> None:
    assert shipped.predict([text])[0].tier is not RiskTier.HIGH


# Signing off for the night, tried as a member types it (session 8's probe). "last", "tonight" and "message" are the
# words of goodbye notes in the training pool; nothing there says a sign-off is ordinary.
@pytest.mark.parametrize(
    "text",
    [
        "goodnight everyone",
        "cya tomorrow",
        "bye guys",
        "ok im out",
        "taking a break from discord",
        _known_miss(
            "last message for tonight",
            "issue 13 defect: the shipped head (attempt 28) puts it at high (P(crisis) 0.979; attempt 27 0.950, "
            "attempt 26 0.977, attempt 16 0.964, attempt 8 0.998)",
        ),
    ],
)
def test_signing_off_for_the_night_does_not_reach_high(shipped, text: str) -> None:
    assert shipped.predict([text])[0].tier is not RiskTier.HIGH


# Ordinary tiredness and dread, tried as a member types it after attempt 16 shipped (a probe written then, not a blind
# set). Its cut-off (P 0.78) is lower than attempt 8's (0.93); on the blind sets it is no worse, but these single lines
# about sleep and work sit where the training pool's passive ideation does.
@pytest.mark.parametrize(
    "text",
    [
        "i need a nap so bad",
        "gonna sleep for 12 hours",
        "i want to stay in bed all weekend",
        "ugh i just want this week to be over",
        # At high under attempts 16-27 (strict xfails until attempt 28's blend put them at elevated, 0.819 and
        # 0.830 against its cut-off 0.848).
        "i dont want to go to work tomorrow",
        "i just want to sleep for a week",
    ],
)
def test_ordinary_tiredness_does_not_reach_high(shipped, text: str) -> None:
    assert shipped.predict([text])[0].tier is not RiskTier.HIGH


TIREDNESS_SET = Path(__file__).resolve().parents[2] / "data" / "risk_tiredness_independent.csv"


def test_a_blind_set_of_ordinary_tiredness_and_dread_stays_mostly_below_high(shipped) -> None:
    """149 ordinary lines (tired, dreading work, fed up, low, signing off) written by a helper that opened no file after
    attempt 16 shipped: the shipped head (attempt 28) puts 2 at high (1.3 %); attempts 27 and 26 3, attempt 16 4,
    attempt 8 8 (5.4 %); the issue's bound for hard negatives is 5 %."""
    from inference.risk.chat_eval import evaluate_suite

    assert evaluate_suite(shipped, TIREDNESS_SET)["hard_negative_high_rate"] <= 0.05


def test_independent_suite_greetings_and_hard_negatives_stay_below_high(suite) -> None:
    assert suite["categories"]["greeting_thanks_short"]["high_rate"] == 0.0
    assert suite["hard_negative_high_rate"] <= 0.05


@pytest.fixture(scope="module")
def suite_texts_at_high(shipped) -> tuple[list[str], list[bool]]:
    from inference.risk.chat_eval import read_suite

    texts = [text for _, _, text in read_suite(SUITE)]
    return texts, [r.tier is RiskTier.HIGH for r in shipped.predict(texts)]


@pytest.mark.parametrize("emoji", ["😭", "🙂", "😔"])
def test_an_appended_emoji_moves_no_suite_message_across_high(shipped, suite_texts_at_high, emoji) -> None:
    """Issue 13 item 2. Before emoji were dropped from what the crisis head reads, 22 of 400 fell from high.

    Not the phrase list's joking cues ("lol", 💀, 😂 …): those soften a phrase match on purpose, in the open
    (inference/risk/crisis_phrases.txt), as a moderator may edit them."""
    texts, plain = suite_texts_at_high
    dressed = [r.tier is RiskTier.HIGH for r in shipped.predict([f"{text} {emoji}" for text in texts])]
    assert sum(a != b for a, b in zip(plain, dressed, strict=True)) == 0


# The later suites, each written by a fresh session from the category definitions alone before the attempt whose
# gate it was (2: attempt 8, when the first had been looked at three times; 3: attempts 10 and 11; 4: attempt 12; 5:
# attempt 13; 6: attempt 14; 7: attempt 15; 8: attempt 16; 9: attempt 17, which did not ship; 10: attempt 18, which
# did not ship; 11: attempt 19, the phrase layer; 12: attempt 20, which did not ship; 13: attempt 22, which did not
# ship; 14: attempt 23, 15: attempt 24 and 16: attempt 25, none of which shipped; sessions 3 to 16 opened no file).
# Since attempt 26 the shipped head is TRAINED on suites 1-16 (each spent as a gate), so what they show here is a
# regression check on training rows, not evidence; suites 17-19 (attempt 26's pooled gate), 20-22 (attempt 27's) and
# 23-25 (attempt 28's) are never trained on.
LATER_SUITES = {
    number: Path(__file__).resolve().parents[2] / "data" / f"risk_suite_independent_{number}.csv"
    for number in range(2, 26)
}
GATE_SUITES = (23, 24, 25)


@pytest.fixture(scope="module")
def later_suite(shipped) -> Callable[[int], dict]:
    """The shipped model's report on a later suite, computed once per suite."""
    from inference.risk.chat_eval import evaluate_suite

    return functools.cache(lambda number: evaluate_suite(shipped, LATER_SUITES[number]))


# Attempt 16's head (shipped until attempt 26, which trains on suites 1-16) and attempt 19's phrase layer: suite 2, no
# short ordinary message at high and 1.2 %
# of hard negatives; suite 3, no short ordinary turn or short distress message, 2.6 %; suite 4, none, 2.1 %; suite 5,
# none, 2.5 %; suite 6, none, 2.5 %; suite 8, 0 of 29 and 0 of 21, 1.9 %; suite 9, 0 of 30 and 0 of 22, 1.9 %; suite 10,
# 0 of 15 and 0 of 11, 4.2 %; suite 11 (attempt 19's fresh suite), 0 of 33 and 0 of 21, 1.4 %; suite 12, 0 of 39 and 0
# of 20, 1.4 %; suite 13, 0 of 38 and 0 of 26, 2.7 %; suite 14, 0 of 27 and 0 of 22, 0.5 %; suite 15, 0 of 15 short
# ordinary turns, 2.1 %; suite 16, 0 of 9, 2.7 %; suite 7 (5.5 %, one short distress message at high) and the short
# distress of suites 15 and 16 (one each) were strict xfails until attempt 26 trained on them.
@pytest.mark.parametrize(
    ("number", "short_categories"),
    [
        (2, ("short_ordinary",)),
        (3, ("short_ordinary", "short_distress")),
        (4, ("short_ordinary", "short_distress")),
        (5, ("short_ordinary", "short_distress")),
        (6, ("short_ordinary", "short_distress")),
        (8, ("short_ordinary", "short_distress")),
        (9, ("short_ordinary", "short_distress")),
        (10, ("short_ordinary", "short_distress")),
        (11, ("short_ordinary", "short_distress")),
        (12, ("short_ordinary", "short_distress")),
        (13, ("short_ordinary", "short_distress")),
        (14, ("short_ordinary", "short_distress")),
        (7, ("short_ordinary", "short_distress")),
        (15, ("short_ordinary", "short_distress")),
        (16, ("short_ordinary", "short_distress")),
        (17, ("short_ordinary", "short_distress")),
        (18, ("short_ordinary", "short_distress")),
        (19, ("short_ordinary", "short_distress")),
        (20, ("short_ordinary", "short_distress")),
        (21, ("short_ordinary", "short_distress")),
        (22, ("short_ordinary", "short_distress")),
    ],
)
def test_a_later_suite_s_short_messages_and_hard_negatives_stay_below_high(
    later_suite, number: int, short_categories: tuple[str, ...]
) -> None:
    report = later_suite(number)
    at_high = {category: report["categories"][category]["high_rate"] for category in short_categories}
    assert at_high == dict.fromkeys(short_categories, 0.0)
    assert report["hard_negative_high_rate"] <= 0.05


@pytest.fixture(scope="module")
def gate_suites(shipped) -> dict:
    """Suites 23-25 pooled: attempt 28's gate (with 17-22, the suites the shipped head never trained on)."""
    from inference.risk.chat_eval import evaluate_suite

    return evaluate_suite(shipped, [LATER_SUITES[number] for number in GATE_SUITES])


def test_the_gate_suites_keep_short_messages_and_most_hard_negatives_below_high(gate_suites) -> None:
    """Attempt 28 on suites 23-25: no short ordinary turn or short distress message at high (65 and 58), 1.2 % of
    hard negatives (attempt 27 the same)."""
    categories = gate_suites["categories"]
    assert [categories[name]["high_rate"] for name in ("short_ordinary", "short_distress")] == [0.0, 0.0]
    assert gate_suites["hard_negative_high_rate"] <= 0.05


@pytest.mark.parametrize(
    "report",
    [
        _known_miss(
            "gate_suites",
            "issue 13 target missed: crisis recall 0.914 [0.889, 0.935], worst category 0.87 (active ideation) on "
            "suites 23-25 pooled, attempt 28's gate (attempt 27: 0.879 / 0.85; docs/models/risk-crisis-protocol.md)",
        ),
        _known_miss(
            "quote_set",
            "issue 13 target missed: crisis recall 0.767, worst category 0.65 (crises that need their quote to be "
            "read) on attempt 21's quote set (attempt 27: 0.733 / 0.60; attempt 16's head: 0.783 / 0.70)",
        ),
    ],
)
def test_a_never_trained_on_set_s_crisis_recall_meets_the_target(request, report: str) -> None:
    """The sets the shipped head never trained on: its gate suites and the quote set."""
    assert _meets_the_recall_target(request.getfixturevalue(report))


QUOTE_SET = Path(__file__).resolve().parents[2] / "data" / "risk_quotes_independent.csv"


@pytest.fixture(scope="module")
def quote_set(shipped) -> dict:
    """Attempt 21's blind set of messages with Discord block quotes (replies quoting a crisis, answers with one's own)."""
    from inference.risk.chat_eval import evaluate_suite

    return evaluate_suite(shipped, QUOTE_SET)


def test_replies_that_quote_a_crisis_rarely_reach_high(quote_set) -> None:
    """The crisis head reads the writer's own lines: 2 % of the quote set's not-high messages at high (the head
    reading quotes as the writer's words: 9 %, replies quoting a crisis 9 of 40)."""
    assert quote_set["hard_negative_high_rate"] <= 0.05
    assert quote_set["categories"]["reply_quoting_crisis"]["high_rate"] <= 0.05


# Issue 13's own examples of false alarms on hyperbole (regression examples; the hidden set has its own wordings).
@pytest.mark.parametrize(
    "text",
    [
        "I'd die for a pizza rn",
        "dying to know how it ends",  # attempt 8 put it at high (0.966); attempt 16 elevated (0.680)
        "going to throw my controller",
    ],
)
def test_the_issues_hyperbole_examples_do_not_reach_high(shipped, text: str) -> None:
    assert shipped.predict([text])[0].tier is not RiskTier.HIGH
