"""`peercare eval empathy`: score a model on an empathy CSV (levels and rationales), as a table or JSON."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from inference.empathy.checkpoints import load_bi_encoder, read_training_sp_ids
from inference.empathy.data import DataError, read_rows
from inference.empathy.features import EncodedRow, Predictions, encode_rows, predict
from inference.empathy.metrics import accuracy, confusion, iou_f1, macro_f1, token_f1
from inference.errors import ModelLoadError

log = logging.getLogger(__name__)

LEVEL_NAMES = ("none", "weak", "strong")


def evaluate_predictions(encoded: Sequence[EncodedRow], predictions: Predictions) -> dict[str, float]:
    """accuracy, macro_f1, iou_f1, token_f1 and n, plus rationale scores on rows with a gold level above 0.

    iou_f1/token_f1 follow upstream: every row counts, and rows without annotated rationales have every
    token as gold (upstream's heuristic). The ``*_level_above_0`` scores use only rows whose rationales
    are real annotations.
    """
    gold = [e.level for e in encoded]
    positive = [i for i, e in enumerate(encoded) if e.level > 0]
    pos_gold = [predictions.token_gold[i] for i in positive]
    pos_pred = [predictions.token_predicted[i] for i in positive]
    return {
        "accuracy": round(accuracy(gold, predictions.levels), 4),
        "macro_f1": round(macro_f1(gold, predictions.levels), 4),
        "iou_f1": round(iou_f1(predictions.token_gold, predictions.token_predicted), 4),
        "token_f1": round(token_f1(predictions.token_gold, predictions.token_predicted), 4),
        "iou_f1_level_above_0": round(iou_f1(pos_gold, pos_pred), 4),
        "token_f1_level_above_0": round(token_f1(pos_gold, pos_pred), 4),
        "n": len(encoded),
    }


def run_eval(args: argparse.Namespace) -> int:
    """Entry point of ``peercare eval empathy``; returns the exit code."""
    mechanism = args.mechanism
    source = args.model or f"shipped:empathy-{mechanism}"
    try:
        rows = read_rows(args.data)
        if args.limit:
            rows = rows[: args.limit]
        total = len(rows)
        if not args.include_training:
            trained = read_training_sp_ids(source, setting="--model")
            rows = [row for row in rows if row.sp_id not in trained]
            print(
                f"left out {total - len(rows)} of {total} rows whose seeker post (sp_id) the model was trained on "
                "(--include-training keeps them)"
            )
        if not rows:
            raise DataError("no rows left to evaluate")
        device = _device(args.device)
        loaded = load_bi_encoder(source, mechanism=mechanism, setting="--model", device=device)
    except (DataError, ModelLoadError) as exc:
        print(f"peercare eval empathy: error: {exc}", file=sys.stderr)
        return 2
    encoded = encode_rows(rows, loaded.tokenizer, loaded.model.config, all_if_none=True)
    predictions = predict(loaded.model, encoded, loaded.pad_id, device=device, batch_size=args.batch_size)
    scores = evaluate_predictions(encoded, predictions)
    matrix = confusion([e.level for e in encoded], predictions.levels)
    _print_table(mechanism, source, loaded.source_format, scores, matrix)
    if args.plot:
        _plot_confusion(matrix, Path(args.plot), title=f"{mechanism} ({scores['n']} pairs)")
        print(f"confusion matrix written to {args.plot}")
    if args.json:
        print(json.dumps(scores, sort_keys=True))
    return 0


def _print_table(
    mechanism: str, source: str, kind: str, scores: dict[str, float], matrix: list[list[int]]
) -> None:
    print(f"{mechanism} model {source} ({kind} format) on {scores['n']} pairs")
    width = max(len(k) for k in scores)
    for key, value in scores.items():
        print(f"  {key:<{width}}  {value}")
    print("  confusion (rows: gold level, columns: predicted)")
    print("  " + " " * 8 + "".join(f"{name:>8}" for name in LEVEL_NAMES))
    for name, row in zip(LEVEL_NAMES, matrix, strict=True):
        print("  " + f"{name:>8}" + "".join(f"{count:>8}" for count in row))


def _plot_confusion(matrix: list[list[int]], path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4, 3.5))
    axes.imshow(matrix, cmap="Blues")
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            axes.text(j, i, str(count), ha="center", va="center")
    axes.set_xticks(range(3), LEVEL_NAMES)
    axes.set_yticks(range(3), LEVEL_NAMES)
    axes.set_xlabel("predicted level")
    axes.set_ylabel("gold level")
    axes.set_title(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("--device cuda but no CUDA GPU is visible", setting="--device")
    return torch.device(requested)
