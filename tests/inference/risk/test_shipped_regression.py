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
        pytest.param(
            "morning, just woke up",
            marks=pytest.mark.xfail(
                strict=True,
                reason="issue 13 defect: attempt 8 puts it at high (P(crisis) 0.985; attempt 13 elevated)",
            ),
        ),
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
        pytest.param(
            "last message for tonight",
            marks=pytest.mark.xfail(
                strict=True,
                reason="issue 13 defect: attempt 8 puts it at high (P(crisis) 0.998; attempt 15's head 0.990)",
            ),
        ),
    ],
)
def test_signing_off_for_the_night_does_not_reach_high(shipped, text: str) -> None:
    assert shipped.predict([text])[0].tier is not RiskTier.HIGH


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


@pytest.mark.xfail(
    strict=True,
    reason="issue 13 target missed: crisis recall 0.785 overall, worst category 0.64 (attempt 8's F(E8), chosen "
    "by the declared rule and gate; docs/models/risk-crisis-protocol.md)",
)
def test_independent_suite_crisis_recall_meets_the_target(suite) -> None:
    assert suite["crisis_recall"] >= 0.95 and suite["crisis_recall_worst_category"] >= 0.9


# The later suites, each written by a fresh session from the category definitions alone before the attempt whose
# gate it was (2: attempt 8, when the first had been looked at three times; 3: attempts 10 and 11; 4: attempt 12; 5:
# attempt 13; 6: attempt 14; 7: attempt 15; sessions 3 to 7 opened no file). Never train or tune on them.
LATER_SUITES = {
    number: Path(__file__).resolve().parents[2] / "data" / f"risk_suite_independent_{number}.csv"
    for number in (2, 3, 4, 5, 6, 7)
}


@pytest.fixture(scope="module")
def later_suite(shipped) -> Callable[[int], dict]:
    """The shipped model's report on a later suite, computed once per suite."""
    from inference.risk.chat_eval import evaluate_suite

    return functools.cache(lambda number: evaluate_suite(shipped, LATER_SUITES[number]))


# Attempt 8 (shipped): suite 2, 0 of 50 short ordinary messages at high and 2.0 % of hard negatives; suite 3, 0 of 24
# short ordinary turns, 0 of 37 short distress messages, 1.6 %; suite 4, 0 of 10, 0 of 18, 3.7 %; suite 5, 0 of 25
# short distress messages and 4.4 % (its short ordinary turns: the strict xfail below); suite 6, 0 of 14, 0 of 23, 3.0 %;
# suite 7, 0 of 5 and 0 of 18 (its hard negatives, 5.5 %: the strict xfail below).
@pytest.mark.parametrize(
    ("number", "short_categories"),
    [
        (2, ("short_ordinary",)),
        (3, ("short_ordinary", "short_distress")),
        (4, ("short_ordinary", "short_distress")),
        (5, ("short_distress",)),
        (6, ("short_ordinary", "short_distress")),
    ],
)
def test_a_later_suite_s_short_messages_and_hard_negatives_stay_below_high(
    later_suite, number: int, short_categories: tuple[str, ...]
) -> None:
    report = later_suite(number)
    at_high = {category: report["categories"][category]["high_rate"] for category in short_categories}
    assert at_high == dict.fromkeys(short_categories, 0.0)
    assert report["hard_negative_high_rate"] <= 0.05


def test_seventh_suite_short_messages_stay_below_high(later_suite) -> None:
    categories = later_suite(7)["categories"]
    assert [categories[name]["high_rate"] for name in ("short_ordinary", "short_distress")] == [0.0, 0.0]


@pytest.mark.xfail(
    strict=True,
    reason="issue 13 target missed: attempt 8 puts 5.5 % of the seventh suite's hard negatives at high (hyperbole "
    "and recovery stories 3 of 20 each; attempt 15 3.3 %: docs/models/risk-crisis-protocol.md)",
)
def test_seventh_suite_hard_negatives_stay_at_most_5_percent(later_suite) -> None:
    assert later_suite(7)["hard_negative_high_rate"] <= 0.05


@pytest.mark.xfail(
    strict=True,
    reason="issue 13 defect: attempt 8 puts 1 of the fifth suite's 17 short ordinary turns at high, 'jus woke up' "
    "(P(crisis) 0.994; attempts 12 and 13 too: docs/models/risk-crisis-protocol.md)",
)
def test_fifth_suite_short_ordinary_turns_stay_below_high(later_suite) -> None:
    assert later_suite(5)["categories"]["short_ordinary"]["high_rate"] == 0.0


# What the shipped head misses on each later suite, and the best head tried on it (docs/models/risk-crisis-protocol.md).
LATER_SUITE_RECALL_MISSES = {
    2: "crisis recall 0.72, worst category 0.52 (preparatory acts) on the second suite (attempt 5b: 0.705 / 0.48)",
    3: "crisis recall 0.824, worst category 0.63 (current self-harm) on the third suite (attempts 10 and 11 reach "
    "0.928 and 0.961 but failed their gates)",
    4: "crisis recall 0.759, worst category 0.67 on the fourth suite (attempt 12 reaches 0.898 / 0.80 and failed its "
    "gate)",
    5: "crisis recall 0.779, worst category 0.64 on the fifth suite (attempt 13 reaches 0.926 / 0.86 and failed its "
    "gate)",
    6: "crisis recall 0.797, worst category 0.56 (plan / intent / timing) on the sixth suite (attempt 14 reaches "
    "0.979 / 0.96 and failed its gate on ordinary ESConv chat)",
    7: "crisis recall 0.812, worst category 0.68 (burdensomeness) on the seventh suite (attempt 15 reaches 0.919 / "
    "0.875 and failed its gate)",
}


@pytest.mark.parametrize(
    "number",
    [
        pytest.param(number, marks=pytest.mark.xfail(strict=True, reason=f"issue 13 target missed: {why}"))
        for number, why in LATER_SUITE_RECALL_MISSES.items()
    ],
)
def test_a_later_suite_s_crisis_recall_meets_the_target(later_suite, number: int) -> None:
    report = later_suite(number)
    assert report["crisis_recall"] >= 0.95 and report["crisis_recall_worst_category"] >= 0.9


# Issue 13's own examples of false alarms on hyperbole (regression examples; the hidden set has its own wordings).
@pytest.mark.parametrize(
    "text",
    [
        "I'd die for a pizza rn",
        pytest.param(
            "dying to know how it ends",
            marks=pytest.mark.xfail(
                strict=True,
                reason="attempt 8 puts it at high (P(crisis) 0.966; 5b 0.970); attempt 9 fixed it but missed its "
                "gate on short ordinary chat (docs/models/risk-crisis-protocol.md)",
            ),
        ),
        "going to throw my controller",
    ],
)
def test_the_issues_hyperbole_examples_do_not_reach_high(shipped, text: str) -> None:
    assert shipped.predict([text])[0].tier is not RiskTier.HIGH
