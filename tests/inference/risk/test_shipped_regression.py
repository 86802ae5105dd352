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
            "issue 13 defect: the shipped head (attempt 16) puts it at high (P(crisis) 0.964; attempt 8 "
            "0.998, attempt 15's head 0.990)",
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
        _known_miss(
            "i dont want to go to work tomorrow",
            "issue 13 defect: attempt 16 (shipped) puts it at high (P(crisis) 0.862; attempt 8 elevated, "
            "0.839)",
        ),
        _known_miss(
            "i just want to sleep for a week",
            "issue 13 defect: attempt 16 (shipped) puts it at high (P(crisis) 0.939; attempt 8 0.989)",
        ),
    ],
)
def test_ordinary_tiredness_does_not_reach_high(shipped, text: str) -> None:
    assert shipped.predict([text])[0].tier is not RiskTier.HIGH


TIREDNESS_SET = Path(__file__).resolve().parents[2] / "data" / "risk_tiredness_independent.csv"


def test_a_blind_set_of_ordinary_tiredness_and_dread_stays_mostly_below_high(shipped) -> None:
    """149 ordinary lines (tired, dreading work, fed up, low, signing off) written by a helper that opened no file after
    attempt 16 shipped: the shipped head puts 4 at high (2.7 %), attempt 8 put 8 (5.4 %); the issue's bound for hard
    negatives is 5 %."""
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


@pytest.mark.parametrize(
    "report",
    [
        _known_miss(
            "suite",
            "issue 13 target missed: crisis recall 0.885 overall, worst category 0.76 on the first suite (attempt 16's "
            "H, shipped by its declared no-worse rule; attempt 8 0.785 / 0.64; docs/models/risk-crisis-protocol.md)",
        ),
        _known_miss(
            "quote_set",
            "issue 13 target missed: crisis recall 0.783, worst category 0.70 (crises that need their quote to be "
            "read) on attempt 21's quote set (the head reading quotes: 0.633 / 0.50)",
        ),
    ],
)
def test_independent_suite_crisis_recall_meets_the_target(request, report: str) -> None:
    """The first suite and the quote set (the later suites have their own test below)."""
    assert _meets_the_recall_target(request.getfixturevalue(report))


# The later suites, each written by a fresh session from the category definitions alone before the attempt whose
# gate it was (2: attempt 8, when the first had been looked at three times; 3: attempts 10 and 11; 4: attempt 12; 5:
# attempt 13; 6: attempt 14; 7: attempt 15; 8: attempt 16; 9: attempt 17, which did not ship; 10: attempt 18, which
# did not ship; 11: attempt 19, the phrase layer; 12: attempt 20, which did not ship; 13: attempt 22, which did not
# ship; 14: attempt 23, 15: attempt 24 and 16: attempt 25, none of which shipped; sessions 3 to 16 opened no file).
# Never train or tune on them.
LATER_SUITES = {
    number: Path(__file__).resolve().parents[2] / "data" / f"risk_suite_independent_{number}.csv"
    for number in (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)
}


@pytest.fixture(scope="module")
def later_suite(shipped) -> Callable[[int], dict]:
    """The shipped model's report on a later suite, computed once per suite."""
    from inference.risk.chat_eval import evaluate_suite

    return functools.cache(lambda number: evaluate_suite(shipped, LATER_SUITES[number]))


# The shipped state (attempt 16's head, attempt 19's phrase layer): suite 2, no short ordinary message at high and 1.2 %
# of hard negatives; suite 3, no short ordinary turn or short distress message, 2.6 %; suite 4, none, 2.1 %; suite 5,
# none, 2.5 %; suite 6, none, 2.5 %; suite 8, 0 of 29 and 0 of 21, 1.9 %; suite 9, 0 of 30 and 0 of 22, 1.9 %; suite 10,
# 0 of 15 and 0 of 11, 4.2 %; suite 11 (attempt 19's fresh suite), 0 of 33 and 0 of 21, 1.4 %; suite 12, 0 of 39 and 0
# of 20, 1.4 %; suite 13, 0 of 38 and 0 of 26, 2.7 %; suite 14, 0 of 27 and 0 of 22, 0.5 %; suite 15, 0 of 15 short
# ordinary turns, 2.1 %; suite 16, 0 of 9, 2.7 %; suite 7 and the short distress of suites 15 and 16: the strict xfails
# below (attempt 8 had 5.5 % on suite 7).
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
        (15, ("short_ordinary",)),
        (16, ("short_ordinary",)),
    ],
)
def test_a_later_suite_s_short_messages_and_hard_negatives_stay_below_high(
    later_suite, number: int, short_categories: tuple[str, ...]
) -> None:
    report = later_suite(number)
    at_high = {category: report["categories"][category]["high_rate"] for category in short_categories}
    assert at_high == dict.fromkeys(short_categories, 0.0)
    assert report["hard_negative_high_rate"] <= 0.05


@pytest.mark.xfail(
    strict=True,
    reason="issue 13 defect: attempt 16 (shipped) puts 1 of the seventh suite's 18 short distress messages at high, "
    "'want to hide under my blanket all day' (P(crisis) 0.835, cut-off 0.782; attempt 8 had none)",
)
def test_seventh_suite_short_messages_stay_below_high(later_suite) -> None:
    categories = later_suite(7)["categories"]
    assert [categories[name]["high_rate"] for name in ("short_ordinary", "short_distress")] == [0.0, 0.0]


@pytest.mark.xfail(
    strict=True,
    reason="issue 13 target missed: attempt 16 (shipped) puts 5.5 % of the seventh suite's hard negatives at high "
    "(recovery stories and helping a friend 3 of 20 each, hyperbole 2, third person 1; attempt 8 5.5 %, attempt 15 "
    "3.3 %: "
    "docs/models/risk-crisis-protocol.md)",
)
def test_seventh_suite_hard_negatives_stay_at_most_5_percent(later_suite) -> None:
    assert later_suite(7)["hard_negative_high_rate"] <= 0.05


@pytest.mark.parametrize(
    "number",
    [
        _known_miss(
            15,
            "issue 13 defect: the shipped state puts 1 of the fifteenth suite's 19 short distress messages at high, "
            "'havent left my bed today' (P(crisis) 0.832, cut-off 0.782)",
        ),
        _known_miss(
            16,
            "issue 13 defect: the shipped state puts 1 of the sixteenth suite's 17 short distress messages at high, "
            "'i just wanna stay in bed all day' (P(crisis) 0.944)",
        ),
    ],
)
def test_a_later_suite_s_short_distress_stays_below_high(later_suite, number: int) -> None:
    assert later_suite(number)["categories"]["short_distress"]["high_rate"] == 0.0


# What the shipped state (attempt 16's head, attempt 19's phrase layer) misses on each later suite, and attempt 8's
# figures (docs/models/risk-crisis-protocol.md).
LATER_SUITE_RECALL_MISSES = {
    2: "crisis recall 0.875, worst category 0.72 (preparatory acts) on the second suite (attempt 8: 0.72 / 0.52)",
    3: "crisis recall 0.948, worst category 0.84 (current self-harm) on the third suite (attempt 8: 0.824 / 0.63)",
    4: "crisis recall 0.893, worst category 0.83 (burdensomeness) on the fourth suite (attempt 8: 0.759 / 0.67)",
    5: "crisis recall 0.884, worst category 0.77 (plan / intent / timing) on the fifth suite (attempt 8: 0.779 / 0.64)",
    6: "worst category 0.88 (plan / intent / timing; recall 0.953) on the sixth suite (attempt 8: 0.797 / 0.56)",
    7: "crisis recall 0.909, worst category 0.79 (plan / intent / timing) on the seventh suite (attempt 8: 0.812 / 0.68)",
    8: "crisis recall 0.949, worst category 0.88 (plan / intent / timing) on the eighth suite, attempt 16's fresh one "
    "(attempt 8: 0.817 / 0.70)",
    9: "crisis recall 0.949, worst category 0.88 (preparatory acts) on the ninth suite (attempt 17, not shipped: 0.928 / "
    "0.88)",
    10: "crisis recall 0.896, worst category 0.79 (preparatory acts) on the tenth suite (the old phrase layer: 0.885 / "
    "0.79)",
    11: "crisis recall 0.841, worst category 0.68 (plan / intent / timing) on the eleventh suite, attempt 19's fresh one "
    "(the old phrase layer: the same)",
    12: "crisis recall 0.862, worst category 0.73 (plan / intent / timing) on the twelfth suite (attempt 20's phrase "
    "layer, not shipped: the same)",
    13: "crisis recall 0.861, worst category 0.76 (plan / intent / timing) on the thirteenth suite (attempt 22, not "
    "shipped: 0.902 / 0.80)",
    14: "crisis recall 0.847, worst category 0.70 (active ideation) on the fourteenth suite (attempt 23's blend, not "
    "shipped: 0.857 / 0.70)",
    15: "crisis recall 0.850, worst category 0.68 (preparatory acts) on the fifteenth suite (attempt 24's phrase file, "
    "not shipped: the same)",
    16: "crisis recall 0.882, worst category 0.77 (burdensomeness) on the sixteenth suite (attempt 25, not shipped: "
    "0.833 / 0.67)",
}


@pytest.mark.parametrize(
    "number",
    [
        _known_miss(number, f"issue 13 target missed: {why}")
        for number, why in LATER_SUITE_RECALL_MISSES.items()
    ],
)
def test_a_later_suite_s_crisis_recall_meets_the_target(later_suite, number: int) -> None:
    report = later_suite(number)
    assert _meets_the_recall_target(report)


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
