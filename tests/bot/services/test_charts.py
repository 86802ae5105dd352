"""Trend charts: any guild name draws literally, and the same chart asked for twice is drawn once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.services import charts
from bot.services.charts import render_level_trend, render_level_trend_async
from bot.services.stats import LevelPoint

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
POINTS = [LevelPoint(T0.date() + timedelta(days=i), 1.0, 0.5, i / 5, i + 1) for i in range(3)]


@pytest.mark.parametrize(
    "guild_name",
    ["Save $$ Support", "Costs $5 or $10", "$", r"$\frac{1}{$", r"x_1^2 \alpha", "50% off {braces}"],
)
def test_stats_title_with_dollar_signs(guild_name: str) -> None:
    assert render_level_trend(POINTS, f"{guild_name}: empathy levels, last 90 days").startswith(PNG_MAGIC)


@pytest.fixture
def counted_renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    drawn: list[str] = []
    original = charts.render_level_trend

    def counting(points, title):  # type: ignore[no-untyped-def]
        drawn.append(title)
        return original(points, title)

    monkeypatch.setattr(charts, "render_level_trend", counting)
    monkeypatch.setattr(charts, "_cache", charts.ChartCache())
    return drawn


async def test_chart_cache_draws_the_same_trend_once(counted_renders: list[str]) -> None:
    first = await render_level_trend_async(POINTS, "Your empathy levels")
    second = await render_level_trend_async(POINTS, "Your empathy levels")
    assert first == second and counted_renders == ["Your empathy levels"]


async def test_chart_cache_draws_again_when_the_trend_changes(counted_renders: list[str]) -> None:
    await render_level_trend_async(POINTS, "Your empathy levels")
    await render_level_trend_async(POINTS[:2], "Your empathy levels")
    await render_level_trend_async(POINTS, "Another title")
    assert len(counted_renders) == 3


def test_chart_cache_forgets_after_its_lifetime() -> None:
    now = [0.0]
    cache = charts.ChartCache(ttl_s=300, max_entries=2, clock=lambda: now[0])
    cache.put(("a",), b"A")
    assert cache.get(("a",)) == b"A"
    now[0] = 301.0
    assert cache.get(("a",)) is None


def test_chart_cache_is_bounded() -> None:
    cache = charts.ChartCache(ttl_s=300, max_entries=2)
    for key in ("a", "b", "c"):
        cache.put((key,), key.encode())
    assert cache.get(("a",)) is None and cache.get(("c",)) == b"c"
