"""Measure a risk model: on a CSV with a 0/1 "needs a moderator" column, or on the datasets' own test splits."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inference.risk import calibration as cal
from inference.risk.data import (
    CSSRS_AT_RISK,
    DEFAULT_DATA_DIR,
    UNLABELLED,
    load_cssrs_users,
    load_dreaddit_depseverity,
    load_sdcnl,
)
from inference.risk.model_folder import CALIBRATION_FILE
from inference.risk.scorer import RiskScorer
from inference.types import RiskResult, RiskTier

log = logging.getLogger(__name__)

DATASETS = ("sdcnl", "dreaddit", "depseverity", "cssrs")
# Which kind of model label each dataset measures (matched by name, so published models work too).
_DATASET_LABEL = {"sdcnl": "suicid", "dreaddit": "stress", "depseverity": "depress", "cssrs": "suicid"}
SCORE_CHUNK = 64


class EvaluationError(ValueError):
    """The data or the model cannot be evaluated as asked; the message says what to change."""


def score_in_chunks(scorer: RiskScorer, texts: Sequence[str]) -> list[RiskResult]:
    results: list[RiskResult] = []
    for start in range(0, len(texts), SCORE_CHUNK):
        results += scorer.predict(texts[start : start + SCORE_CHUNK])
        log.info("scored %d/%d", len(results), len(texts))
    return results


def needs_moderator_metrics(results: Sequence[RiskResult], needs_moderator: Sequence[int]) -> dict:
    """``recall_high``: share of label-1 rows put in the high tier; ``false_alarm_rate``: share of label-0 rows."""
    high = np.asarray([result.tier == RiskTier.HIGH for result in results])
    labels = np.asarray(needs_moderator, dtype=int)
    positives, negatives = labels == 1, labels == 0
    return {
        "recall_high": round(float(high[positives].mean()), 4) if positives.any() else None,
        "false_alarm_rate": round(float(high[negatives].mean()), 4) if negatives.any() else None,
        "n": len(labels),
        "n_positive": int(positives.sum()),
        "n_negative": int(negatives.sum()),
        "tiers": {tier.value: sum(result.tier == tier for result in results) for tier in RiskTier},
        "raised_by_phrases": sum(bool(result.phrase_matches) for result in results),
    }


def label_metrics(probabilities: np.ndarray, labels: np.ndarray, cut: float) -> dict:
    predicted = probabilities >= cut
    return {
        "f1": round(cal.f1(labels, predicted), 4),
        "balanced_accuracy": round(cal.balanced_accuracy(labels, predicted), 4),
        "n": len(labels),
        "n_positive": int(labels.sum()),
        "cut_off": round(float(cut), 4),
    }


def decision_cut_offs(folder: Path) -> dict[str, float]:
    """Per-label cut-offs chosen on the dev split (``decision`` in risk_calibration.json), else 0.5."""
    import json

    path = folder / CALIBRATION_FILE
    if not path.is_file():
        return {}
    return {str(k): float(v) for k, v in (json.loads(path.read_text()).get("decision") or {}).items()}


def model_label_for(scorer: RiskScorer, dataset: str) -> str:
    stem = _DATASET_LABEL[dataset]
    for label in scorer.labels:
        if stem in label.casefold():
            return label
    raise EvaluationError(
        f"the risk model has no label for {dataset} (looked for a label containing {stem!r} in "
        f"{', '.join(scorer.labels)})"
    )


def dataset_test_split(dataset: str, data_dir: Path = DEFAULT_DATA_DIR) -> tuple[list[str], np.ndarray]:
    """The authors' test split of ``dataset`` as (texts, 0/1 labels)."""
    if dataset == "sdcnl":
        rows = [(text, label) for text, label, split, _ in load_sdcnl(data_dir) if split == "test"]
    elif dataset == "dreaddit":
        rows = [
            (t, stress) for t, stress, _, split, _ in load_dreaddit_depseverity(data_dir) if split == "test"
        ]
    elif dataset == "depseverity":
        rows = [
            (t, dep)
            for t, _, dep, split, _ in load_dreaddit_depseverity(data_dir)
            if split == "test" and dep != UNLABELLED
        ]
    else:
        raise EvaluationError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")
    return [text for text, _ in rows], np.asarray([label for _, label in rows], dtype=int)


def evaluate_dataset(scorer: RiskScorer, dataset: str, cut_offs: dict[str, float], data_dir: Path) -> dict:
    label = model_label_for(scorer, dataset)
    cut = cut_offs.get(label, 0.5)
    if dataset == "cssrs":
        return evaluate_cssrs(scorer, label, cut, data_dir)
    texts, labels = dataset_test_split(dataset, data_dir)
    probabilities = np.asarray([p[label] for p in _probabilities(scorer, texts)])
    return {"dataset": dataset, "label": label, **label_metrics(probabilities, labels, cut)}


def evaluate_cssrs(scorer: RiskScorer, label: str, cut: float, data_dir: Path) -> dict:
    """User level: a user's score is the maximum over their posts; at risk = Ideation, Behavior or Attempt."""
    users = load_cssrs_users(data_dir)
    texts = [post for posts, _ in users for post in posts]
    owners = [index for index, (posts, _) in enumerate(users) for _ in posts]
    post_probabilities = [p[label] for p in _probabilities(scorer, texts)]
    user_probabilities = np.zeros(len(users))
    np.maximum.at(user_probabilities, np.asarray(owners), np.asarray(post_probabilities))
    labels = np.asarray([CSSRS_AT_RISK[level] for _, level in users])
    return {
        "dataset": "cssrs",
        "label": label,
        "unit": "user",
        **label_metrics(user_probabilities, labels, cut),
    }


def _probabilities(scorer: RiskScorer, texts: Sequence[str]) -> list[dict[str, float]]:
    out: list[dict[str, float]] = []
    for start in range(0, len(texts), SCORE_CHUNK):
        out += scorer.probabilities([t if t.strip() else "." for t in texts[start : start + SCORE_CHUNK]])
        log.info("scored %d/%d", len(out), len(texts))
    return out


def evaluate_csv(
    scorer: RiskScorer,
    path: Path,
    *,
    text_column: str,
    label_column: str,
    label: str | None,
    cut_offs: dict[str, float],
) -> dict:
    """A 0/1 column means "needs a moderator" (unless ``label`` names the model label it marks);
    a column of label names gives per-label F1 and balanced accuracy for every model label it uses."""
    import pandas as pd

    if not path.is_file():
        raise EvaluationError(f"{path} does not exist")
    frame = pd.read_csv(path)
    for column in (text_column, label_column):
        if column not in frame.columns:
            raise EvaluationError(
                f"{path} has no column {column!r} (columns: {', '.join(map(str, frame.columns))})"
            )
    frame = frame[frame[text_column].astype(str).str.strip() != ""]
    texts = frame[text_column].astype(str).tolist()
    values = frame[label_column]
    binary = set(values.dropna().astype(str).str.strip().unique()) <= {"0", "1", "0.0", "1.0"}
    if binary and label is None:
        results = score_in_chunks(scorer, texts)
        return {
            "mode": "needs_moderator",
            **needs_moderator_metrics(results, values.astype(float).astype(int)),
        }
    probabilities = _probabilities(scorer, texts)
    metrics: dict = {"mode": "labels", "n": len(texts), "labels": {}}
    if binary:
        if label not in scorer.labels:
            raise EvaluationError(f"--label {label!r} is not a model label ({', '.join(scorer.labels)})")
        marked = {label: values.astype(float).astype(int).to_numpy()}
    else:
        names = values.astype(str).str.strip()
        used = [name for name in scorer.labels if (names == name).any()]
        if not used:
            raise EvaluationError(
                f"no value of {label_column!r} is a model label ({', '.join(scorer.labels)})"
            )
        marked = {name: (names == name).astype(int).to_numpy() for name in used}
    for name, y in marked.items():
        p = np.asarray([row[name] for row in probabilities])
        metrics["labels"][name] = label_metrics(p, y, cut_offs.get(name, 0.5))
    return metrics
