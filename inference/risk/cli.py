"""`peercare train risk` and `peercare eval risk`: train the offline risk model, measure any risk model."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_OUTPUT = Path("inference/shipped/risk")


def _layers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--layers takes comma-separated layer numbers, not {text!r}"
        ) from None


def register_train(subparsers) -> None:
    from inference.risk.data import DEFAULT_DATA_DIR

    parser = subparsers.add_parser(
        "risk",
        help="train the offline multi-label risk model (suicidal/depression/stress) and calibrate it",
        description="Train LoRA adapters + a head over all-MiniLM-L6-v2 on SDCNL, Dreaddit and DepSeverity, "
        "calibrate on a dev split carved from the authors' train splits, and save a compact model folder.",
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="the shared data folder")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="model folder to write")
    parser.add_argument("--base-model", default="all-MiniLM-L6-v2")
    parser.add_argument("--mode", choices=("lora", "head"), default="lora")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument(
        "--lora-blocks",
        type=_layers,
        default=(3, 4, 5),
        help="encoder blocks (0-based) that get LoRA adapters",
    )
    parser.add_argument("--lr-lora", type=float, default=5e-4)
    parser.add_argument("--lr-head", type=float, default=2e-3)
    parser.add_argument(
        "--layers", type=_layers, default=(4, 5, 6), help="encoder layers to mean-pool, e.g. 4,5,6"
    )
    parser.add_argument("--window-tokens", type=int, default=256)
    parser.add_argument("--overlap-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/risk/feature-cache"))
    parser.add_argument(
        "--init-head", type=Path, help="start from this model folder's trained head (LoRA mode)"
    )
    parser.add_argument(
        "--lexical-labels",
        type=_label_list,
        default=(),
        help="labels that also get a word-level TF-IDF logit, e.g. stress,depression (default: none)",
    )
    parser.add_argument(
        "--adapter-labels",
        type=_label_list,
        default=(),
        help="LoRA mode: labels the tuned encoder answers, e.g. stress,depression; the others keep "
        "--init-head's head over the frozen encoder (default: all labels)",
    )
    parser.add_argument(
        "--calibrate-only",
        action="store_true",
        help="recalibrate the model already in --output on the dev split (no training)",
    )
    parser.set_defaults(func=_train)
    _register_train_crisis(subparsers, DEFAULT_DATA_DIR)


def _register_train_crisis(subparsers, data_dir: Path) -> None:
    parser = subparsers.add_parser(
        "crisis",
        help="train the crisis head that decides the high tier, by docs/models/risk-crisis-protocol.md",
        description="Cross-validate the declared variants (3 seeds x 5 folds), choose by the declared rule, "
        "refit the winner on the whole pool and write it into an existing risk model folder (crisis_head.*, "
        "crisis_adapter/, the crisis cut-offs in risk_calibration.json and crisis_selection.json).",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="risk model folder to add it to")
    parser.add_argument("--data-dir", type=Path, default=data_dir)
    parser.add_argument("--base-model", default="all-MiniLM-L6-v2")
    parser.add_argument("--seeds", type=lambda v: tuple(int(s) for s in _label_list(v)), default=(13, 29, 47))
    parser.add_argument(
        "--selection",
        type=Path,
        help="reuse a crisis_selection.json already computed (skips cross-validation)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path("runs/risk/crisis-cache/minilm.npz"))
    parser.add_argument(
        "--attempt",
        type=int,
        default=28,
        help="the protocol's attempt whose pool and cut-off rule to use: 5 to 17, 22, 25, 26, 27 or 28 "
        "(default 28: the shipped head)",
    )
    parser.set_defaults(func=_train_crisis)


def _train_crisis(args: argparse.Namespace) -> int:
    import torch

    from inference.risk.crisis_train import ATTEMPTS, train_crisis

    if args.attempt not in ATTEMPTS:
        known = ", ".join(str(number) for number in sorted(ATTEMPTS))
        raise SystemExit(
            f"peercare train crisis: --attempt {args.attempt} is not a declared attempt ({known})"
        )
    _quiet_libraries()
    torch.set_num_threads(args.threads)
    report = train_crisis(
        output=args.output,
        data_dir=args.data_dir,
        base_model=args.base_model,
        seeds=args.seeds,
        selection_path=args.selection,
        cache_path=args.cache,
        attempt=ATTEMPTS[args.attempt],
    )
    print(json.dumps({key: value for key, value in report.items() if key != "variants"}))
    return 0


def register_eval(subparsers) -> None:
    from inference.risk.data import DEFAULT_DATA_DIR
    from inference.risk.evaluate import DATASETS

    parser = subparsers.add_parser(
        "risk",
        help="evaluate a risk model on a CSV or on a dataset's test split",
        description="With --data: a 0/1 label column means 'needs a moderator' (reports recall_high, "
        "false_alarm_rate, n); a column of label names (or --label) gives per-label F1 and balanced accuracy. "
        "With --dataset: the authors' test split of sdcnl, dreaddit, depseverity (or cssrs, user level). "
        "With --suite: a category,expected(high|not_high),text CSV (crisis recall per category, overall with its 95% "
        "interval, hard-negative high rate); repeat it to pool several suites into one gate. "
        "With --ordinary-chat: ESConv-dev seeker turns (high rate on ordinary chat, all and <= 3 words).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="CSV file to evaluate")
    source.add_argument(
        "--dataset", choices=DATASETS, action="append", help="a dataset's test split (repeatable)"
    )
    source.add_argument(
        "--suite",
        type=Path,
        action="append",
        help="crisis / hard-negative suite CSV (category,expected,text); repeatable: several suites are pooled "
        "into one report, each suite's own figures beside it",
    )
    source.add_argument(
        "--ordinary-chat",
        choices=("heldout", "train", "all"),
        help="ESConv-dev seeker turns: the conversations the crisis head never trained on (heldout), or others",
    )
    parser.add_argument(
        "--replies",
        action="store_true",
        help="with --ordinary-chat: the supporters' replies (pairs.csv) instead of the seekers' turns",
    )
    parser.add_argument(
        "--bursts",
        action="store_true",
        help="with --ordinary-chat: judge each turn as the bot does, the latest message of its author's burst "
        "(the speaker's earlier turns of the conversation); also counts conversations with a turn at high",
    )
    parser.add_argument(
        "--cut-offs",
        type=_cut_offs,
        default=(),
        help="with --suite or --ordinary-chat: also report the figures with the high cut-off at each of these "
        "probabilities, e.g. 0.8,0.9,0.95 (the messages are scored once and re-tiered, phrase floor included)",
    )
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="label")
    parser.add_argument(
        "--label", help="the model label a 0/1 --label-column marks (default: needs a moderator)"
    )
    parser.add_argument(
        "--model", default=None, help="risk model source (default: RISK_MODEL or shipped:risk)"
    )
    parser.add_argument(
        "--problem-type", choices=("auto", "multi_label_classification", "single_label_classification")
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.set_defaults(func=_evaluate)


def _cut_offs(value: str) -> tuple[float, ...]:
    """``"0.8, 0.95"`` -> ``(0.8, 0.95)``; each a probability."""
    try:
        values = tuple(float(part) for part in _label_list(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of probabilities: {value!r}") from None
    if not values or not all(0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"cut-offs must be probabilities between 0 and 1: {value!r}")
    return values


def _label_list(value: str) -> tuple[str, ...]:
    """``"stress, depression"`` -> ``("stress", "depression")``."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _train(args: argparse.Namespace) -> int:
    from inference.risk.train import TrainOptions, recalibrate, train_risk_model

    _quiet_libraries()
    # Each flag is named after its TrainOptions field: the dataclass and the parser list the options, and a
    # third copy here would let a new flag silently not reach training.
    given = vars(args)
    options = TrainOptions(
        **{
            option.name: given[option.name]
            for option in dataclasses.fields(TrainOptions)
            if option.name in given
        }
    )
    metrics = recalibrate(options) if args.calibrate_only else train_risk_model(options)
    print(json.dumps(metrics))
    return 0


def _model_source(args: argparse.Namespace) -> str:
    if args.model:
        return args.model
    import os

    return os.environ.get("RISK_MODEL", "shipped:risk")


def _evaluate(args: argparse.Namespace) -> int:
    from inference.errors import InferenceError
    from inference.risk.chat_eval import evaluate_ordinary_chat, evaluate_suite
    from inference.risk.data import DataMissing
    from inference.risk.evaluate import EvaluationError, decision_cut_offs, evaluate_csv, evaluate_dataset
    from inference.risk.scorer import RiskScorer
    from inference.sources import resolve_source

    if args.cut_offs and args.suite is None and args.ordinary_chat is None:
        print("peercare eval risk: error: --cut-offs needs --suite or --ordinary-chat", file=sys.stderr)
        return 2
    _quiet_libraries()
    source = _model_source(args)
    try:
        scorer = RiskScorer.load(source, device=args.device, problem_type=args.problem_type)
        cut_offs = decision_cut_offs(resolve_source(source, setting="RISK_MODEL"))
        if args.suite is not None:
            report = evaluate_suite(scorer, args.suite, args.cut_offs)
        elif args.ordinary_chat is not None:
            report = evaluate_ordinary_chat(
                scorer,
                args.data_dir,
                args.ordinary_chat,
                replies=args.replies,
                bursts=args.bursts,
                cut_offs=args.cut_offs,
            )
        elif args.data is not None:
            report = evaluate_csv(
                scorer,
                args.data,
                text_column=args.text_column,
                label_column=args.label_column,
                label=args.label,
                cut_offs=cut_offs,
            )
        else:
            report = {
                "datasets": [evaluate_dataset(scorer, name, cut_offs, args.data_dir) for name in args.dataset]
            }
    except (InferenceError, EvaluationError, DataMissing) as exc:
        print(f"peercare eval risk: error: {exc}", file=sys.stderr)
        return 2
    report["model"] = source
    if not args.json:
        _print_report(report)
    print(json.dumps(report) if args.json else "")
    return 0


def _print_report(report: dict) -> None:
    if report.get("mode") in ("suite", "ordinary_chat"):
        for key, value in report.items():
            if key == "categories":
                for name, row in value.items():
                    print(
                        f"  {name:24} expected={row['expected']:8} high_rate={row['high_rate']} n={row['n']}"
                    )
            elif key == "at_cut_offs":
                print("with the high cut-off at:")
                for row in value:
                    print("  " + "  ".join(f"{name}={figure}" for name, figure in row.items()))
            elif key == "suites":
                print("each suite:")
                for name, row in value.items():
                    print(f"  {name}  " + "  ".join(f"{figure}={number}" for figure, number in row.items()))
            elif key != "mode":
                print(f"{key}: {value}")
        return
    if report.get("mode") == "needs_moderator":
        print(
            f"needs-a-moderator: recall_high={report['recall_high']} false_alarm_rate={report['false_alarm_rate']} "
            f"n={report['n']} (tiers {report['tiers']})"
        )
        return
    rows = report.get("datasets") or [{"label": name, **m} for name, m in report.get("labels", {}).items()]
    for row in rows:
        name = row.get("dataset", row["label"])
        print(
            f"{name:12} label={row['label']:10} balanced_accuracy={row['balanced_accuracy']:.3f} "
            f"f1={row['f1']:.3f} n={row['n']} (cut-off {row['cut_off']})"
        )


def _quiet_libraries() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for name in ("transformers", "huggingface_hub", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass
