"""Property-based (hypothesis): member and moderator input parsers answer any text with a value or a clear error.

Never another exception (a traceback in the logs and "something went wrong" for the member), never a value
outside its range.
"""

from __future__ import annotations

import math
import string

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.services.checkins import parse_time, parse_timezone
from bot.services.errors import UserFacingError
from bot.services.reply_scoring import has_scorable_text
from bot.services.risk_thresholds import updated
from bot.services.seeker_risk import EXCERPT_CHARS, excerpt
from inference.engine import visible_text
from inference.types import RiskThresholds

pytestmark = pytest.mark.reliability

FAST = settings(max_examples=300, deadline=None, database=None)
DEFAULTS = RiskThresholds(
    elevated={"suicidal": 0.45, "depression": 0.36}, high={"suicidal": 0.58, "depression": 0.7}
)
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
time_like = st.text(alphabet="0123456789:.h -+ap", max_size=8)
zone_like = st.text(alphabet=string.ascii_letters + "/_-+.0123456789 \\", max_size=30)
number_like = st.text(alphabet="0123456789.-+eE_naifINF,;=: suicdaldeprsoin", max_size=24)


@FAST
@given(st.one_of(st.text(max_size=40), time_like))
@example("25:00")
@example("noon")
@example("")
@example("٠٩:٣٠")  # Arabic-Indic digits
def test_time_of_day_is_valid_or_refused_clearly(text: str) -> None:
    try:
        hour, minute = parse_time(text)
    except UserFacingError as exc:
        assert "HH:MM" in str(exc) and len(str(exc)) < 300
        return
    assert 0 <= hour < 24 and 0 <= minute < 60


@FAST
@given(st.one_of(st.text(max_size=70), zone_like))
@example("Europe")  # a folder of zones: once an IsADirectoryError and a generic failure
@example("America")
@example("../../etc/passwd")
@example("Europe/Berlin\x00")
@example("UTC")
def test_time_zone_is_known_or_refused_clearly(text: str) -> None:
    try:
        zone = parse_timezone(text)
    except UserFacingError as exc:
        assert "time zone" in str(exc) and len(str(exc)) < 300
        return
    assert zone.key == text.strip()


@FAST
@given(
    high=st.one_of(st.none(), number_like, st.text(max_size=20)), elevated=st.one_of(st.none(), number_like)
)
@example(high="1.5", elevated=None)
@example(high="nan", elevated=None)
@example(high="1e400", elevated=None)
@example(high="0.5", elevated="0.9")
@example(high="suicidal=2", elevated=None)
def test_thresholds_are_probabilities_or_refused_clearly(high: str | None, elevated: str | None) -> None:
    try:
        stored = updated(None, DEFAULTS, high=high, elevated=elevated)
    except UserFacingError as exc:
        assert len(str(exc)) < 400
        return
    if stored is None:
        return
    for level in ("high", "elevated"):
        assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in stored[level].values())
    for label, high_value in stored["high"].items():
        assert stored["elevated"].get(label, 0.0) <= high_value


@FAST
@given(st.text(max_size=2000))
@example("x" * 4000)
@example(ZERO_WIDTH * 100)
def test_alert_excerpt_is_short_and_has_no_zero_width_characters(text: str) -> None:
    cut = excerpt(text)
    assert len(cut) <= EXCERPT_CHARS
    assert not set(cut) & set(ZERO_WIDTH)


@FAST
@given(st.text(alphabet=ZERO_WIDTH + " \n\t\r\u00a0\u2003\u3000", max_size=50))
def test_blank_and_zero_width_only_text_is_not_scorable(text: str) -> None:
    assert not has_scorable_text(text)


@FAST
@given(st.text(max_size=50), st.sampled_from("aZ9ж字😀"), st.text(max_size=50))
def test_text_with_a_visible_character_is_scorable(before: str, visible: str, after: str) -> None:
    assert has_scorable_text(before + visible + after)


def test_the_bot_and_the_models_agree_on_which_text_is_scorable() -> None:
    """Every single character: the bot must not send the models a text they reject as empty (an error)."""
    disagree = [
        hex(cp)
        for cp in range(0x110000)
        if not 0xD800 <= cp <= 0xDFFF and has_scorable_text(chr(cp)) != bool(visible_text(chr(cp)))
    ]
    assert disagree == []
