"""assign_tier: probabilities and phrase matches to a tier, monotonic in both."""

from __future__ import annotations

import itertools

import pytest

from inference.risk.tiers import assign_tier, phrase_tier
from inference.types import RiskThresholds, RiskTier

THRESHOLDS = RiskThresholds(
    elevated={"suicidal": 0.3, "depression": 0.5},
    high={"suicidal": 0.6},
)


def tier_of(probabilities: dict[str, float], thresholds: RiskThresholds = THRESHOLDS, phrases=()) -> RiskTier:
    return assign_tier(probabilities, thresholds, phrases)[0]


def test_high_cut_off_makes_a_post_high() -> None:
    assert assign_tier({"suicidal": 0.6, "depression": 0.1}, THRESHOLDS) == (RiskTier.HIGH, ("suicidal",))


def test_elevated_cut_off_makes_a_post_elevated() -> None:
    assert assign_tier({"suicidal": 0.1, "depression": 0.55}, THRESHOLDS) == (
        RiskTier.ELEVATED,
        ("depression",),
    )


def test_below_every_cut_off_is_none() -> None:
    assert assign_tier({"suicidal": 0.29, "depression": 0.49}, THRESHOLDS) == (RiskTier.NONE, ())


def test_label_without_a_cut_off_never_raises_the_tier() -> None:
    assert tier_of({"neutral": 1.0, "stress": 1.0}) == RiskTier.NONE


def test_triggered_labels_come_strongest_first() -> None:
    thresholds = RiskThresholds(elevated={"a": 0.1, "b": 0.1, "c": 0.1}, high={})
    assert assign_tier({"a": 0.2, "b": 0.9, "c": 0.5}, thresholds)[1] == ("b", "c", "a")


def test_label_over_its_high_cut_off_is_at_least_elevated_without_an_elevated_cut_off() -> None:
    thresholds = RiskThresholds(elevated={}, high={"suicidal": 0.5})
    assert tier_of({"suicidal": 0.7}, thresholds) == RiskTier.HIGH


GRID = [0.0, 0.2, 0.31, 0.5, 0.59, 0.61, 0.9, 1.0]


def test_higher_probabilities_never_lower_the_tier() -> None:
    for s1, s2, d1, d2 in itertools.product(GRID, GRID, GRID, GRID):
        if s1 <= s2 and d1 <= d2:
            low = tier_of({"suicidal": s1, "depression": d1})
            high = tier_of({"suicidal": s2, "depression": d2})
            assert high.at_least(low), (s1, s2, d1, d2)


def test_lower_thresholds_never_lower_the_tier() -> None:
    for cut, lower_cut, p in itertools.product(GRID, GRID, GRID):
        if lower_cut <= cut:
            strict = RiskThresholds(elevated={"suicidal": cut / 2}, high={"suicidal": cut})
            lenient = RiskThresholds(elevated={"suicidal": lower_cut / 2}, high={"suicidal": lower_cut})
            assert tier_of({"suicidal": p}, lenient).at_least(tier_of({"suicidal": p}, strict))


@pytest.mark.parametrize("model_tier_probability", [0.0, 0.4, 0.9])
@pytest.mark.parametrize("phrase", ["high:kill_myself", "elevated:cant_go_on"])
def test_phrase_matches_raise_but_never_lower_the_tier(model_tier_probability: float, phrase: str) -> None:
    probabilities = {"suicidal": model_tier_probability}
    without = tier_of(probabilities)
    with_phrase = tier_of(probabilities, phrases=(phrase,))
    assert with_phrase.at_least(without)
    assert with_phrase.at_least(phrase_tier(phrase))


def test_phrase_raised_tier_reports_no_model_labels() -> None:
    assert assign_tier({"suicidal": 0.4}, THRESHOLDS, ["high:kill_myself"]) == (RiskTier.HIGH, ())


def test_unrecognised_phrase_names_count_as_high() -> None:
    assert phrase_tier("kill_myself") == RiskTier.HIGH
    assert phrase_tier("mystery:kill_myself") == RiskTier.HIGH
