"""Train the multi-task bi-encoder (``multitask.py``): the three Reddit CSVs joined by pair, one responder pass.

The recipe is the single-mechanism one (``training.py``): frozen seeker encoder; responder adapters (``peft``
LoRA) on the top N layers only, whose inputs are computed once and cached; level + rationale loss per mechanism,
summed. A pair missing one mechanism's label adds no loss for it. The protocol is
docs/models/empathy-multitask-protocol.md.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from inference.empathy.data import EmpathyRow, read_rows, split_by_seeker
from inference.empathy.evaluation import evaluate_predictions
from inference.empathy.features import EncodedRow, encode_rows, predict, rationale_targets, stack_states
from inference.empathy.model import BiEncoderConfig, level_and_rationale_loss
from inference.empathy.multitask import MultiTaskBiEncoder, save_multitask
from inference.empathy.multitask_card import write_multitask_card
from inference.empathy.training import (
    Recipe,
    _class_weights,
    _device,
    _encoder_layers,
    _length_buckets,
    _seed_everything,
    frozen_base,
    frozen_inputs,
    run_facts,
    run_from_args,
    top_layer_states,
)
from inference.sources import resolve_source

FILES = {
    "ER": "emotional-reactions-reddit.csv",
    "IP": "interpretations-reddit.csv",
    "EX": "explorations-reddit.csv",
}
MISSING = -100  # a level the pair does not carry: cross-entropy ignores it


@dataclass(frozen=True)
class JointRow:
    """One (seeker post, reply) pair with every mechanism's level and rationales it carries."""

    sp_id: str
    rp_id: str
    seeker_post: str
    response_post: str
    levels: Mapping[str, int]
    rationales: Mapping[str, str]


@dataclass(kw_only=True)
class MultiTaskOptions(Recipe):
    data_dir: str = "../shared/data/empathy-reddit"
    out: str = "runs/empathy-multitask"
    # Each mechanism's shipped choice (inference/shipped/empathy-*/training_report.json).
    class_weights: dict[str, str] = field(
        default_factory=lambda: {"ER": "sqrt", "IP": "balanced", "EX": "sqrt"}
    )
    lora_rank: int = 32
    lora_alpha: float = 64.0
    lora_dropout: float = 0.05
    train_top_layers: int = 2
    device: str = "auto"
    threads: int | None = None
    limit: int | None = None


def _folded(text: str) -> str:
    """Whitespace runs folded to one space: the three CSVs differ only in them."""
    return " ".join(text.split())


def joint_rows(data_dir: Path, mechanisms: Sequence[str] = tuple(FILES)) -> list[JointRow]:
    """The mechanisms' CSVs joined on (sp_id, rp_id), in the order pairs first appear."""
    # A file may hold one (sp_id, rp_id) twice (the public CSVs do, 52 times, sometimes with other labels):
    # the n-th copy in one file is joined with the n-th in the others, so no row is dropped.
    by_pair: dict[tuple[str, str, int], dict[str, EmpathyRow]] = {}
    for mechanism in mechanisms:
        seen: Counter[tuple[str, str]] = Counter()
        for row in read_rows(data_dir / FILES[mechanism]):
            copy = seen[(row.sp_id, row.rp_id)]
            seen[(row.sp_id, row.rp_id)] += 1
            by_pair.setdefault((row.sp_id, row.rp_id, copy), {})[mechanism] = row
    joined = []
    for (sp_id, rp_id, _), rows in by_pair.items():
        first = next(iter(rows.values()))
        joined.append(
            JointRow(
                sp_id,
                rp_id,
                _folded(first.seeker_post),
                _folded(first.response_post),
                {m: row.level for m, row in rows.items()},
                {m: _folded(row.rationales) for m, row in rows.items()},
            )
        )
    return joined


def encode_joint(
    rows: Sequence[JointRow], tokenizer: Any, config: BiEncoderConfig, mechanisms: Sequence[str]
) -> dict[str, list[EncodedRow]]:
    """Per mechanism, every pair encoded; a pair without that mechanism's label has level and rationale
    labels MISSING, so it adds no loss."""
    encoded = {}
    for mechanism in mechanisms:
        as_rows = [
            EmpathyRow(
                r.sp_id,
                r.rp_id,
                r.seeker_post,
                r.response_post,
                r.levels.get(mechanism, 0),
                r.rationales.get(mechanism, ""),
            )
            for r in rows
        ]
        items = encode_rows(as_rows, tokenizer, config)
        encoded[mechanism] = [
            item
            if mechanism in row.levels
            else replace(item, level=MISSING, rationale_labels=[MISSING] * len(item.rationale_labels))
            for row, item in zip(rows, items, strict=True)
        ]
    return encoded


def train_multitask(options: MultiTaskOptions, *, command: str = "") -> dict[str, Any]:
    """Train, score the dev split (as trained and as saved), and write the folder with its report and card."""

    from inference.contrastive import LoraShape, lora_copy

    started = time.time()
    mechanisms = tuple(FILES)
    device = _device(options.device)
    if options.threads:
        torch.set_num_threads(options.threads)
    rows = joint_rows(Path(options.data_dir), mechanisms)
    if options.limit:
        rows = rows[: options.limit]
    train_rows, dev_rows = _split(rows, options)
    print(f"multi-task: {len(train_rows)} training pairs, {len(dev_rows)} dev pairs", flush=True)
    base_path = resolve_source(options.base, setting="--base")
    tokenizer, seeker = frozen_base(base_path, device)
    pad_id = int(tokenizer.pad_token_id or 0)
    configs = {
        m: BiEncoderConfig(mechanism=m, hidden_size=seeker.config.hidden_size, max_length=options.max_length)
        for m in mechanisms
    }
    train_enc = encode_joint(train_rows, tokenizer, configs["ER"], mechanisms)
    dev_enc = encode_joint(dev_rows, tokenizer, configs["ER"], mechanisms)
    depth = len(_encoder_layers(seeker) or [])
    if not 0 < options.train_top_layers <= depth:
        raise ValueError(
            f"--train-top-layers must be between 1 and {depth} (the shared responder is an adapter)"
        )
    if options.lora_rank < 1:
        raise ValueError("--lora-rank must be at least 1 (the shared responder is an adapter)")
    split_at = depth - options.train_top_layers
    # Every mechanism's rows hold the same posts; any one of them gives the encoder's states.
    cache, train_seekers, dev_seekers = frozen_inputs(
        seeker,
        train_enc["ER"],
        dev_enc["ER"],
        pad_id,
        device,
        split_at=split_at,
        options=options,
        base_path=base_path,
    )
    n_train = len(train_rows)

    _seed_everything(options.seed)
    shape = LoraShape(
        rank=options.lora_rank,
        alpha=options.lora_alpha,
        dropout=options.lora_dropout,
        blocks=tuple(range(split_at, depth)),
    )
    peft_responder = lora_copy(seeker, shape)
    model = MultiTaskBiEncoder(configs, None, peft_responder.get_base_model()).to(device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"training {trainable / 1e6:.2f}M parameters for {options.epochs} epochs on {device}", flush=True)
    history = _fit(
        model, train_enc, train_seekers, cache["response_split"][:n_train], split_at, device, options
    )

    report: dict[str, Any] = {"dev": {}, "dev_as_saved": {}}
    for mechanism in mechanisms:
        report["dev"][mechanism] = _scores(
            model.view(mechanism), dev_enc[mechanism], dev_seekers, pad_id, device
        )
        print(f"dev {mechanism}: macro-F1 {report['dev'][mechanism]['macro_f1']:.3f}", flush=True)
    out = Path(options.out)
    save_multitask(
        model,
        peft_responder,
        out,
        base_encoder=options.base,
        training_sp_ids={r.sp_id for r in train_rows},
    )
    from inference.empathy.checkpoints import load_bi_encoder

    shared: dict = {}
    for mechanism in mechanisms:
        reloaded = load_bi_encoder(out, mechanism=mechanism, device=device, base_cache=shared)
        report["dev_as_saved"][mechanism] = _scores(
            reloaded.model, dev_enc[mechanism], dev_seekers, pad_id, device
        )
    report.update(run_facts(options, command, history, started, trainable, len(train_rows), len(dev_rows)))
    (out / "training_report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    write_multitask_card(out)
    print(f"saved the multi-task model to {out} in {report['minutes']} min", flush=True)
    return report


def _split(rows: Sequence[JointRow], options: MultiTaskOptions) -> tuple[list[JointRow], list[JointRow]]:
    """The single-mechanism models' split: by sp_id, the same seed and fraction (``split_by_seeker``)."""
    stand_ins = [EmpathyRow(r.sp_id, r.rp_id, "", "", 0, "") for r in rows]
    _, dev = split_by_seeker(stand_ins, dev_fraction=options.dev_fraction, seed=options.split_seed)
    dev_ids = {r.sp_id for r in dev}
    return [r for r in rows if r.sp_id not in dev_ids], [r for r in rows if r.sp_id in dev_ids]


def _fit(
    model: MultiTaskBiEncoder,
    encoded: Mapping[str, Sequence[EncodedRow]],
    seeker_states: Sequence[torch.Tensor],
    responder_inputs: Sequence[torch.Tensor],
    split_at: int,
    device: torch.device,
    options: MultiTaskOptions,
) -> list[dict[str, float]]:
    from transformers import get_linear_schedule_with_warmup

    first = next(iter(encoded.values()))
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=options.lr, weight_decay=options.weight_decay)
    total = max(1, math.ceil(len(first) / options.batch_size) * options.epochs)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(options.warmup * total), total)
    weights = {}
    for mechanism, items in encoded.items():
        labelled = [e.level for e in items if e.level != MISSING]
        found = _class_weights(labelled, options.class_weights[mechanism])
        weights[mechanism] = found.to(device) if found is not None else None
    generator = random.Random(options.seed)
    history = []
    for epoch in range(options.epochs):
        model.train()
        totals = {mechanism: 0.0 for mechanism in encoded}
        for chunk in _length_buckets(
            [len(e.response.input_ids) for e in first], options.batch_size, generator
        ):
            seekers, seeker_mask = stack_states([seeker_states[i] for i in chunk])
            hidden, mask = top_layer_states(
                model.responder_encoder, [responder_inputs[i] for i in chunk], split_at, device
            )
            outputs = model.score_all((seekers.to(device), seeker_mask.to(device)), (hidden, mask))
            loss = hidden.new_zeros(())
            for mechanism, (level_logits, rationale_logits) in outputs.items():
                levels = torch.tensor([encoded[mechanism][i].level for i in chunk], device=device)
                if not bool((levels != MISSING).any()):
                    continue
                part, _, _ = level_and_rationale_loss(
                    level_logits,
                    rationale_logits,
                    levels,
                    rationale_targets(encoded[mechanism], chunk).to(device),
                    lambda_ei=options.lambda_ei,
                    lambda_re=options.lambda_re,
                    class_weights=weights[mechanism],
                )
                loss = loss + part
                totals[mechanism] += part.item() * len(chunk)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            scheduler.step()
        epoch_stats = {mechanism: round(value / len(first), 4) for mechanism, value in totals.items()}
        history.append(epoch_stats)
        print(f"epoch {epoch + 1}/{options.epochs}: {epoch_stats}", file=sys.stderr, flush=True)
    model.eval()
    return history


def _scores(
    view: Any,
    encoded: Sequence[EncodedRow],
    seekers: Sequence[torch.Tensor],
    pad_id: int,
    device: torch.device,
) -> dict[str, float]:
    """Dev scores of one mechanism over the pairs that carry its label."""
    keep = [i for i, item in enumerate(encoded) if item.level != MISSING]
    rows = [encoded[i] for i in keep]
    return evaluate_predictions(
        rows, predict(view, rows, pad_id, device=device, seeker_states=[seekers[i] for i in keep])
    )


def run_train_multitask(args: Any) -> int:
    """Entry point of ``peercare train empathy-multitask``; returns the exit code."""
    return run_from_args(
        args,
        MultiTaskOptions,
        train_multitask,
        "empathy-multitask",
        lambda report: {m: scores["macro_f1"] for m, scores in report["dev"].items()},
    )
