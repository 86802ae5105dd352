"""Parsing and validating the risk thresholds a moderator types into `/peercare setup`."""

from __future__ import annotations

import pytest

from bot.services.errors import UserFacingError
from bot.services.risk_thresholds import from_mapping, parse_option, updated
from inference.types import RiskThresholds

DEFAULTS = RiskThresholds(
    elevated={"suicidal": 0.4, "depression": 0.6},
    high={"suicidal": 0.7, "depression": 0.9},
)
LABELS = ("suicidal", "depression")


def test_one_number_sets_every_main_label() -> None:
    assert parse_option("high_threshold", "0.8", LABELS) == {"suicidal": 0.8, "depression": 0.8}


def test_label_pairs_set_only_those_labels() -> None:
    assert parse_option("high_threshold", "Suicidal=0.75; depression:0.95", LABELS) == {
        "suicidal": 0.75,
        "depression": 0.95,
    }


@pytest.mark.parametrize("text", ["1.5", "-0.1", "nan", "suicidal=2"])
def test_values_outside_zero_to_one_are_refused_clearly(text: str) -> None:
    with pytest.raises(UserFacingError, match="between 0 and 1"):
        parse_option("high_threshold", text, LABELS)


def test_unknown_label_is_refused_with_the_known_labels() -> None:
    with pytest.raises(UserFacingError, match="depression, suicidal"):
        parse_option("high_threshold", "anxiety=0.5", LABELS)


def test_words_are_refused_as_numbers() -> None:
    with pytest.raises(UserFacingError, match="not a number"):
        parse_option("high_threshold", "high", LABELS)


def test_default_resets_to_the_model_card() -> None:
    stored = updated(None, DEFAULTS, high="0.8")
    assert stored == {"elevated": DEFAULTS.elevated, "high": {"suicidal": 0.8, "depression": 0.8}}
    assert updated(stored, DEFAULTS, high="default") is None


def test_elevated_above_high_is_refused() -> None:
    with pytest.raises(UserFacingError, match="must not be above"):
        updated(None, DEFAULTS, high="suicidal=0.3")


def test_stored_overrides_merge_over_defaults() -> None:
    merged = from_mapping({"high": {"suicidal": 0.65}}, DEFAULTS)
    assert merged.high == {"suicidal": 0.65, "depression": 0.9}
    assert merged.elevated == DEFAULTS.elevated


def test_stored_threshold_for_a_label_that_left_the_tier_is_ignored() -> None:
    # The crisis head took the high tier from `suicidal`: a guild's old suicidal=0.7 must not page "hello" again.
    crisis_model = RiskThresholds(elevated={"crisis": 0.3, "depression": 0.4}, high={"crisis": 0.8})
    merged = from_mapping(
        {"high": {"suicidal": 0.7, "crisis": 0.9}, "elevated": {"suicidal": 0.5}}, crisis_model
    )
    assert merged.high == {"crisis": 0.9}
    assert merged.elevated == {"crisis": 0.3, "depression": 0.4}
