"""Judge the risk tiers the way members meet them: ordinary chat must stay quiet, crises must reach high.

Two measurements (``peercare eval risk --suite`` / ``--ordinary-chat``), both on tiers as the bot assigns them
(model + phrase floor), never on a probability alone:
- a **suite**: a CSV of ``category, expected (high | not_high), text`` rows: recall per crisis category,
  high rate per hard-negative category, and the overall figures the model card reports, recall with its 95 %
  interval; several suites can be pooled into one gate, each suite's own figures kept beside the pooled ones;
- **ordinary chat**: ESConv-dev seeker turns (typed emotional-support chat). The rate of high among ordinary
  turns, overall and for turns of three words or fewer, plus how its few labelled crisis turns fare.

With ``cut_offs`` either also reports the same figures with the high cut-off moved to each value (``--cut-offs``):
the messages are scored once and re-tiered by the same pure ``assign_tier`` the scorer uses, phrase floor included,
so a model's whole trade-off between crises found and ordinary chat paged can be read before choosing where it sits.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from inference.risk.burst_text import burst_text
from inference.risk.evaluate import EvaluationError, score_in_chunks
from inference.risk.scorer import RiskScorer
from inference.risk.tiers import assign_tier
from inference.types import RiskResult, RiskThresholds, RiskTier

EXPECTED = ("high", "not_high")
SHORT_WORDS = 3


def _rate(flags: Sequence[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def read_suite(path: Path) -> list[tuple[str, str, str]]:
    """(category, expected, text) rows; a literal ``\\n`` in a text is a line break (several short lines)."""
    if not path.is_file():
        raise EvaluationError(f"{path} does not exist")
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"category", "expected", "text"} - set(reader.fieldnames or ())
        if missing:
            raise EvaluationError(f"{path} lacks the column(s) {', '.join(sorted(missing))}")
        for number, row in enumerate(reader, start=2):
            if row["expected"] not in EXPECTED:
                raise EvaluationError(f"{path}:{number}: expected must be high or not_high")
            rows.append((row["category"], row["expected"], row["text"].replace("\\n", "\n")))
    return rows


def at_cut_off(results: Sequence[RiskResult], thresholds: RiskThresholds, cut_off: float) -> list[RiskResult]:
    """The tiers ``results`` would have had with every high cut-off at ``cut_off`` (no model run: the same pure
    ``assign_tier`` over the same probabilities and phrase matches)."""
    moved = RiskThresholds(elevated=thresholds.elevated, high=dict.fromkeys(thresholds.high, cut_off))
    return [
        RiskResult(r.probabilities, *assign_tier(r.probabilities, moved, r.phrase_matches), r.phrase_matches)
        for r in results
    ]


def _at_cut_offs(
    scorer: RiskScorer, results: Sequence[RiskResult], cut_offs: Sequence[float], summarise
) -> list[dict]:
    return [
        {"cut_off": cut_off, **summarise(at_cut_off(results, scorer.thresholds, cut_off))}
        for cut_off in cut_offs
    ]


def evaluate_suite(scorer: RiskScorer, paths: Path | Sequence[Path], cut_offs: Sequence[float] = ()) -> dict:
    """One suite's figures, or several suites pooled into one gate with each suite's own figures under ``suites``.

    Pooling is for precision: one blind suite of about 190 crises cannot tell apart recall gains under about 0.05,
    so the recall comes with its 95 % interval (Wilson) and a gate can be declared over two or three suites.
    """
    paths = [paths] if isinstance(paths, Path) else list(paths)
    if len({path.resolve() for path in paths}) < len(paths):
        raise EvaluationError("the same suite was given twice: each suite counts once in a pooled gate")
    suites = [(path, read_suite(path)) for path in paths]
    rows = [row for _, suite in suites for row in suite]
    results = score_in_chunks(scorer, [text for _, _, text in rows])
    report = {"mode": "suite", "n": len(rows), **_suite_figures(rows, results)}
    if len(suites) > 1:
        report["suites"] = _each_suite(suites, results)
    if cut_offs:
        report["at_cut_offs"] = _at_cut_offs(
            scorer, results, cut_offs, lambda moved: _suite_figures(rows, moved, detail=False)
        )
    return report


def _interval(successes: int, trials: int) -> list[float]:
    """The 95 % Wilson interval of a rate: how far a suite's recall could be from the model's."""
    from scipy.stats import binomtest

    interval = binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="wilson")
    return [round(float(interval.low), 4), round(float(interval.high), 4)]


def _each_suite(
    suites: Sequence[tuple[Path, Sequence[tuple[str, str, str]]]], results: Sequence[RiskResult]
) -> dict[str, dict]:
    """Each pooled suite's own figures, by its path as given (its results are the next ``len(suite)`` of ``results``)."""
    each, start = {}, 0
    for path, suite in suites:
        own = results[start : start + len(suite)]
        start += len(suite)
        each[str(path)] = {"n": len(suite), **_suite_figures(suite, own, detail=False)}
    return each


def _suite_figures(
    rows: Sequence[tuple[str, str, str]], results: Sequence[RiskResult], detail: bool = True
) -> dict:
    by_category: dict[str, list[bool]] = defaultdict(list)
    expected_of: dict[str, str] = {}
    for (category, expected, _), result in zip(rows, results, strict=True):
        by_category[category].append(result.tier == RiskTier.HIGH)
        expected_of[category] = expected
    crisis = [flag for c, flags in by_category.items() if expected_of[c] == "high" for flag in flags]
    negative = [flag for c, flags in by_category.items() if expected_of[c] == "not_high" for flag in flags]
    figures = {
        "crisis_recall": _rate(crisis),
        "crisis_recall_95": _interval(sum(crisis), len(crisis)) if crisis else None,
        "crisis_recall_worst_category": min(
            (_rate(flags) or 0.0 for c, flags in by_category.items() if expected_of[c] == "high"),
            default=None,
        ),
        "hard_negative_high_rate": _rate(negative),
    }
    if detail:
        figures["categories"] = {
            category: {"expected": expected_of[category], "high_rate": _rate(flags), "n": len(flags)}
            for category, flags in sorted(by_category.items())
        }
        figures["tiers"] = _tier_counts(results)
    return figures


def esconv_turns(data_dir: Path, half: str, *, replies: bool = False) -> list[tuple[str, int]]:
    """(text, crisis 0/1) for ESConv-dev seeker turns, or with ``replies`` its supporter replies (all 0):
    ``heldout`` (odd conversations), ``train`` or ``all``."""
    return [(row.text, row.label) for row in _esconv_rows(data_dir, half, replies)]


def esconv_bursts(data_dir: Path, half: str, *, replies: bool = False) -> list[str]:
    """Each turn as the bot would judge it: the latest message of its author's burst, the same speaker's earlier
    turns of the conversation before it (``inference.risk.burst_text``), as if each followed the last within the
    bot's burst window. In the order of ``esconv_turns``."""
    texts: list[str] = []
    lines: list[str] = []
    conversation = None
    for row in _esconv_rows(data_dir, half, replies):
        if row.group != conversation:
            lines, conversation = [], row.group
        lines.append(row.text)
        texts.append(burst_text(lines))
    return texts


def _esconv_rows(data_dir: Path, half: str, replies: bool) -> list:
    from inference.risk.crisis_train import esconv_replies
    from inference.risk.crisis_train import esconv_turns as seeker_turns

    name = "pairs.csv" if replies else "seeker_turns.csv"
    if not (data_dir / "esconv-dev" / name).is_file():
        raise EvaluationError(f"no esconv-dev/{name} under {data_dir}")
    turns = esconv_replies if replies else seeker_turns
    halves = ("train", "heldout") if half == "all" else (half,)
    return [row for part in halves for row in turns(data_dir, half=part)]


def evaluate_ordinary_chat(
    scorer: RiskScorer,
    data_dir: Path,
    half: str = "heldout",
    *,
    replies: bool = False,
    bursts: bool = False,
    cut_offs: Sequence[float] = (),
) -> dict:
    """The high rate on ordinary ESConv turns, each judged alone or (``bursts``) as the bot judges it, the latest
    of its author's burst; a burst with a crisis line in it keeps its later turns high, which the bot turns into one
    case per member, not one page per message."""
    rows = _esconv_rows(data_dir, half, replies)
    texts = esconv_bursts(data_dir, half, replies=replies) if bursts else [row.text for row in rows]
    results = score_in_chunks(scorer, texts)
    report = {
        "mode": "ordinary_chat",
        "half": half,
        "speaker": "supporter" if replies else "seeker",
        "judged": "as bursts" if bursts else "alone",
        "n": len(rows),
        **_ordinary_figures(rows, results),
    }
    if cut_offs:
        report["at_cut_offs"] = _at_cut_offs(
            scorer, results, cut_offs, lambda moved: _ordinary_figures(rows, moved, detail=False)
        )
    return report


def _ordinary_figures(rows: Sequence, results: Sequence[RiskResult], detail: bool = True) -> dict:
    turns = [(row.text, row.label) for row in rows]
    paged = {row.group for row, result in zip(rows, results, strict=True) if result.tier == RiskTier.HIGH}
    crisis_conversations = {row.group for row in rows if row.label}
    ordinary = [(text, result) for (text, crisis), result in zip(turns, results, strict=True) if not crisis]
    crises = [result for (_, crisis), result in zip(turns, results, strict=True) if crisis]
    short = [result for text, result in ordinary if len(text.split()) <= SHORT_WORDS]
    figures = {
        "ordinary_high_rate": _rate([r.tier == RiskTier.HIGH for _, r in ordinary]),
        "ordinary_elevated_or_high_rate": _rate([r.tier != RiskTier.NONE for _, r in ordinary]),
        "short_high_rate": _rate([r.tier == RiskTier.HIGH for r in short]),
        "n_short": len(short),
        "crisis_turns_high": f"{sum(r.tier == RiskTier.HIGH for r in crises)}/{len(crises)}",
        # Conversations without a labelled crisis turn in which some turn reached high (the bot's unit: one case a
        # member), of all such conversations.
        "ordinary_conversations_with_high": f"{len(paged - crisis_conversations)}/"
        f"{len({row.group for row in rows} - crisis_conversations)}",
    }
    if detail:
        figures["tiers"] = _tier_counts([r for _, r in ordinary])
    return figures


def _tier_counts(results: Sequence[RiskResult]) -> dict[str, int]:
    return {tier.value: sum(result.tier == tier for result in results) for tier in RiskTier}
