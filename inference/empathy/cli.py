"""`peercare train empathy` and `peercare eval empathy`: argument parsing only; the work is in training/evaluation."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)

MECHANISMS = ("ER", "IP", "EX")


def _add_command(subparsers, summary: str, description: str) -> argparse.ArgumentParser:
    """Training and evaluation read the same CSV for one mechanism: one command name, one way to say which."""
    parser = subparsers.add_parser("empathy", help=summary, description=description)
    parser.add_argument("--mechanism", required=True, choices=MECHANISMS)
    parser.add_argument(
        "--data", required=True, help="CSV with sp_id, seeker_post, response_post, level, rationales"
    )
    return parser


def register_train(subparsers) -> None:
    parser = _add_command(
        subparsers,
        "train an ER/IP/EX empathy bi-encoder (Sharma et al. 2020) on an empathy CSV",
        "Train one mechanism's bi-encoder: frozen seeker encoder, LoRA (or full) responder, "
        "cross-attention, level and rationale heads; dev split by sp_id; baselines in the same run.",
    )
    _add_recipe_arguments(parser)
    parser.add_argument("--class-weight", choices=("none", "sqrt", "balanced"), default="sqrt")
    parser.add_argument(
        "--no-rationale-heuristic",
        dest="rationale_heuristic",
        action="store_false",
        help="do not label every token of rows without rationales as rationale (upstream does)",
    )
    parser.add_argument("--no-baselines", dest="baselines", action="store_false")
    parser.add_argument("--heads-only-epochs", type=int, default=10)
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.set_defaults(func=_train)
    _register_train_multitask(subparsers)


def _register_train_multitask(subparsers) -> None:
    parser = subparsers.add_parser(
        "empathy-multitask",
        help="train one bi-encoder for ER, IP and EX (one responder pass per reply)",
        description="Join the three empathy CSVs by pair and train a shared responder (a peft LoRA adapter on "
        "its top layers) with a cross-attention, level and rationale head per mechanism; dev split by sp_id as "
        "`train empathy`. Protocol: docs/models/empathy-multitask-protocol.md.",
    )
    parser.add_argument(
        "--data-dir", default="../shared/data/empathy-reddit", help="folder with the three CSVs"
    )
    _add_recipe_arguments(parser)
    parser.set_defaults(func=_train_multitask)


def _add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """The options both empathy trainers take (``training.Recipe`` and the adapters, device and size)."""
    parser.add_argument(
        "--base", default="all-MiniLM-L6-v2", help="base encoder: local folder, alias or hub id"
    )
    parser.add_argument("--out", required=True, help="folder to write the model to")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument(
        "--lr", type=float, default=5e-4, help="learning rate (5e-4 for LoRA; ~3e-5 for full)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42, help="training seed")
    parser.add_argument("--split-seed", type=int, default=42, help="seed of the dev split by sp_id")
    parser.add_argument("--dev-fraction", type=float, default=0.15)
    parser.add_argument("--lambda-ei", type=float, default=1.0, help="weight of the level loss")
    parser.add_argument("--lambda-re", type=float, default=0.5, help="weight of the rationale loss")
    parser.add_argument("--warmup", type=float, default=0.1, help="share of steps with linear warm-up")
    parser.add_argument("--lora-rank", type=int, default=32, help="0 fine-tunes the responder fully")
    parser.add_argument("--lora-alpha", type=float, default=64.0)
    parser.add_argument(
        "--train-top-layers",
        type=int,
        default=2,
        help="adapt only the responder's top N layers (the rest run once, cached); 0 = all",
    )
    parser.add_argument(
        "--cache-dir",
        default="runs/empathy-cache",
        help="where frozen encoder states are cached between runs ('' to disable)",
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N rows (smoke tests)")


def register_eval(subparsers) -> None:
    parser = _add_command(
        subparsers,
        "evaluate an empathy model: accuracy, macro-F1, IOU-F1, token-F1",
        "Evaluate one mechanism's model on an empathy CSV. Rows whose sp_id the model was trained "
        "on are left out unless --include-training is given.",
    )
    parser.add_argument("--model", default=None, help="model source (default: shipped:empathy-<MECHANISM>)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the scores")
    parser.add_argument("--plot", default=None, help="write a confusion-matrix PNG here")
    parser.add_argument(
        "--include-training", action="store_true", help="also score rows the model was trained on"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--limit", type=int, default=None)
    parser.set_defaults(func=_eval)


def _train(args: argparse.Namespace) -> int:
    from inference.empathy.training import run_train

    return run_train(args)


def _train_multitask(args: argparse.Namespace) -> int:
    from inference.empathy.multitask_training import run_train_multitask

    return run_train_multitask(args)


def _eval(args: argparse.Namespace) -> int:
    from inference.empathy.evaluation import run_eval

    return run_eval(args)
