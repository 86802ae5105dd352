"""bench.inference --risk-cost: the crisis head's cost and the phrase floor's share, timed in the same repeats."""

from __future__ import annotations

from bench.inference import risk_cost


def test_risk_cost_reports_each_message_kind_with_the_phrase_floor_s_share() -> None:
    cost = risk_cost(threads=1, repeats=1)
    assert cost["has_crisis_head"] is True
    for kind in ("short_chat", "long_post"):
        sides = cost[kind]
        # What is reported, not how fast: speed targets live in bench/RESULTS.md, never in a timed test.
        assert {
            "baseline_cpu_ms",
            "with_crisis_cpu_ms",
            "ratio",
            "phrase_floor_cpu_ms",
            "phrase_floor_share",
        } <= set(sides)
        assert all(sides[key] > 0 for key in ("baseline_cpu_ms", "with_crisis_cpu_ms", "phrase_floor_cpu_ms"))
