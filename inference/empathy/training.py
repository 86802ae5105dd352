"""Train one mechanism's bi-encoder (upstream recipe, LoRA on the responder), with baselines, and save it.

The seeker encoder is the frozen pretrained encoder, so its outputs are computed once per run and
reused every epoch; only the responder (through LoRA adapters, or fully), the cross-attention and the
heads are trained. The dev split is by seeker post with a fixed seed; the training sp_ids are saved
beside the model so evaluation can leave them out.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import math
import platform
import random
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from inference.empathy.baselines import majority_baseline, tfidf_baseline
from inference.empathy.checkpoints import quiet_transformers, save_pretrained
from inference.empathy.data import level_counts, read_rows, split_by_seeker
from inference.empathy.evaluation import evaluate_predictions
from inference.empathy.features import (
    EncodedRow,
    encode_rows,
    forward_batch,
    pad,
    predict,
    rationale_targets,
    stack_states,
)
from inference.empathy.lora import add_lora, lora_target_paths
from inference.empathy.model import BiEncoderConfig, EmpathyBiEncoder, level_and_rationale_loss
from inference.empathy.model_card import write_model_card
from inference.sources import resolve_source
from inference.types import Mechanism

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class Recipe:
    """What the single-mechanism and the multi-task trainers share: the encoder, the split and the optimiser."""

    base: str = "all-MiniLM-L6-v2"
    epochs: int = 4
    lr: float = 5e-4
    batch_size: int = 32
    seed: int = 42
    split_seed: int = 42
    dev_fraction: float = 0.15
    warmup: float = 0.1
    weight_decay: float = 0.01
    lambda_ei: float = 1.0
    lambda_re: float = 0.5
    # Frozen encoder states are cached here between runs (None or "": no cache); tokens read per post.
    cache_dir: str | None = "runs/empathy-cache"
    max_length: int = 64


@dataclass(kw_only=True)
class TrainOptions(Recipe):
    mechanism: str
    data: str
    out: str = "runs/empathy"
    class_weight: str = "sqrt"  # none | sqrt | balanced
    lora_rank: int = 32  # 0: fine-tune the responder fully
    lora_alpha: float = 64.0
    lora_dropout: float = 0.05
    # Only the top N encoder layers of the responder get adapters; the layers below are frozen, so their
    # outputs are computed once per run (cached on disk, shared by the ER/IP/EX runs) instead of every step.
    # 0 adapts every layer (no cache below the responder).
    train_top_layers: int = 2
    rationale_heuristic: bool = True
    baselines: bool = True
    heads_only_epochs: int = 10
    heads_only_lr: float = 1e-3
    device: str = "auto"
    threads: int | None = None
    limit: int | None = None
    progress: bool = True


def run_train(args: argparse.Namespace) -> int:
    """Entry point of ``peercare train empathy``; returns the exit code."""
    return run_from_args(args, TrainOptions, train, "empathy", lambda report: report["dev"]["model"])


def train(options: TrainOptions, *, command: str = "") -> dict[str, Any]:

    mechanism = Mechanism(options.mechanism).value
    started = time.time()
    device = _device(options.device)
    if options.threads:
        torch.set_num_threads(options.threads)
    _seed_everything(options.seed)
    rows = read_rows(options.data)
    if options.limit:
        rows = rows[: options.limit]
    train_rows, dev_rows = split_by_seeker(rows, dev_fraction=options.dev_fraction, seed=options.split_seed)
    print(
        f"{mechanism}: {len(train_rows)} training pairs {level_counts(train_rows)}, "
        f"{len(dev_rows)} dev pairs {level_counts(dev_rows)} (split by sp_id, seed {options.split_seed})",
        flush=True,
    )
    base_path = resolve_source(options.base, setting="--base")
    tokenizer, seeker = frozen_base(base_path, device)
    pad_id = int(tokenizer.pad_token_id or 0)
    config = BiEncoderConfig(
        mechanism=mechanism,
        hidden_size=seeker.config.hidden_size,
        max_length=options.max_length,
        seeker_mask=True,
    )
    train_enc = encode_rows(train_rows, tokenizer, config, all_if_none=options.rationale_heuristic)
    dev_enc = encode_rows(dev_rows, tokenizer, config, all_if_none=options.rationale_heuristic)
    # Every row gets dev gold labels the same way; the "positive" rationale scores use only level > 0 rows.
    layers = _encoder_layers(seeker)
    top = options.train_top_layers if (layers is not None and options.lora_rank > 0) else 0
    split_at = len(layers) - top if top else 0
    if top and not 0 < top <= len(layers):
        raise ValueError(f"--train-top-layers must be between 1 and {len(layers)}")
    print("encoding posts once with the frozen encoder", flush=True)
    cache, train_seekers, dev_seekers = frozen_inputs(
        seeker, train_enc, dev_enc, pad_id, device, split_at=split_at, options=options, base_path=base_path
    )
    n_train = len(train_enc)

    report: dict[str, Any] = {
        "dev": {},
        "train_counts": level_counts(train_rows),
        "dev_counts": level_counts(dev_rows),
    }
    if options.baselines:
        report["dev"]["majority"] = majority_baseline(train_rows, dev_rows)
        report["dev"]["tfidf_logreg"] = tfidf_baseline(train_rows, dev_rows, seed=options.seed)
        report["dev"]["frozen_encoder_heads_only"] = _heads_only_baseline(
            options,
            config,
            seeker,
            train_enc,
            dev_enc,
            train_seekers,
            dev_seekers,
            cache["response_last"][:n_train],
            cache["response_last"][n_train:],
            pad_id,
            device,
        )
        for name, scores in report["dev"].items():
            print(f"baseline {name}: {_brief(scores)}", flush=True)

    responder = copy.deepcopy(seeker)
    if options.lora_rank > 0:
        paths = lora_target_paths(responder)
        if top:
            paths = [p for p in paths if _layer_index(p) is not None and _layer_index(p) >= split_at]
        add_lora(
            responder, paths, rank=options.lora_rank, alpha=options.lora_alpha, dropout=options.lora_dropout
        )
    else:
        for parameter in responder.parameters():
            parameter.requires_grad_(True)
    _seed_everything(options.seed)
    model = EmpathyBiEncoder(config, None, responder).to(device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(
        f"training {trainable / 1e6:.2f}M parameters "
        f"({'top ' + str(top) + ' responder layers' if top else 'all responder layers'}) "
        f"for {options.epochs} epochs on {device}",
        flush=True,
    )
    history = _fit(
        model,
        train_enc,
        train_seekers,
        pad_id,
        device,
        options,
        epochs=options.epochs,
        lr=options.lr,
        responder_states=None,
        responder_inputs=cache["response_split"][:n_train] if top else None,
        split_at=split_at,
    )
    model_scores = evaluate_predictions(
        dev_enc, predict(model, dev_enc, pad_id, device=device, seeker_states=dev_seekers)
    )
    report["dev"]["model"] = model_scores
    print(f"dev {mechanism}: {_brief(model_scores)}", flush=True)

    model.seeker_encoder = seeker
    out = Path(options.out)
    save_pretrained(
        model,
        out,
        base_encoder=options.base,
        weights_dtype=torch.float16,
        training_sp_ids={r.sp_id for r in train_rows},
        lora_alpha=options.lora_alpha if options.lora_rank > 0 else None,
    )
    # Score the dev split again through the saved (fp16) files, as `peercare eval empathy` will.
    from inference.empathy.checkpoints import load_bi_encoder

    reloaded = load_bi_encoder(out, mechanism=mechanism, device=device)
    report["dev"]["model_as_saved"] = evaluate_predictions(
        dev_enc, predict(reloaded.model, dev_enc, reloaded.pad_id, device=device)
    )
    print(f"dev {mechanism} (reloaded from {out}): {_brief(report['dev']['model_as_saved'])}", flush=True)
    report.update(
        mechanism=mechanism,
        **run_facts(options, command, history, started, trainable, len(train_rows), len(dev_rows)),
    )
    (out / "training_report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    write_model_card(out)
    print(f"saved {mechanism} model to {out} in {report['minutes']} min", flush=True)
    return report


def frozen_base(base_path: Path, device: torch.device) -> tuple[Any, torch.nn.Module]:
    """The base encoder's tokenizer and the encoder itself, frozen in eval mode on ``device`` (the seeker side,
    and what the responder's adapters start from). Never runs remote code."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_path, use_fast=True, trust_remote_code=False)
    with quiet_transformers():
        seeker = AutoModel.from_pretrained(base_path, add_pooling_layer=False, dtype=torch.float32)
    seeker = seeker.to(device).eval()
    for parameter in seeker.parameters():
        parameter.requires_grad_(False)
    return tokenizer, seeker


def frozen_inputs(
    seeker: torch.nn.Module,
    train_enc: Sequence[EncodedRow],
    dev_enc: Sequence[EncodedRow],
    pad_id: int,
    device: torch.device,
    *,
    split_at: int,
    options: Recipe,
    base_path: Path,
) -> tuple[dict[str, list[torch.Tensor]], list[torch.Tensor], list[torch.Tensor]]:
    """The frozen encoder's states for the training and dev rows (``_frozen_states``), and the seeker states
    split into the training rows' and the dev rows'."""
    cache = _frozen_states(
        seeker,
        [*train_enc, *dev_enc],
        pad_id,
        device,
        split_at=split_at,
        cache_dir=options.cache_dir,
        max_length=options.max_length,
        base_path=base_path,
    )
    n_train = len(train_enc)
    return cache, cache["seeker"][:n_train], cache["seeker"][n_train:]


def run_facts(
    options: Any,
    command: str,
    history: list[dict[str, float]],
    started: float,
    trainable: int,
    n_train: int,
    n_dev: int,
) -> dict[str, Any]:
    """What a training report records about the run itself (for its model card): options, command, losses,
    minutes, software and threads, sizes."""
    return {
        "options": asdict(options),
        "command": command,
        "history": history,
        "minutes": round((time.time() - started) / 60, 1),
        "trainable_parameters": trainable,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "n_train": n_train,
        "n_dev": n_dev,
    }


def run_from_args(
    args: argparse.Namespace, options_type: Any, train_function: Any, name: str, summary: Any
) -> int:
    """A ``peercare train`` entry point: options from the parsed arguments, the run, one JSON line of
    ``summary(report)``; a bad value or unreadable file is exit code 2 with the error on stderr."""
    known = options_type.__dataclass_fields__
    options = options_type(**{k: v for k, v in vars(args).items() if k in known and v is not None})
    try:
        report = train_function(options, command=" ".join(shlex.quote(a) for a in sys.argv))
    except (ValueError, OSError) as exc:
        print(f"peercare train {name}: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary(report), sort_keys=True))
    return 0


# -- internals ------------------------------------------------------------------------------------------


def _fit(
    model: EmpathyBiEncoder,
    encoded: Sequence[EncodedRow],
    seeker_states: Sequence[torch.Tensor],
    pad_id: int,
    device: torch.device,
    options: TrainOptions,
    *,
    epochs: int,
    lr: float,
    responder_states: Sequence[torch.Tensor] | None,
    responder_inputs: Sequence[torch.Tensor] | None = None,
    split_at: int = 0,
) -> list[dict[str, float]]:
    from tqdm import tqdm
    from transformers import get_linear_schedule_with_warmup

    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=options.weight_decay)
    steps_per_epoch = math.ceil(len(encoded) / options.batch_size)
    total = max(1, steps_per_epoch * epochs)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(options.warmup * total), total)
    weights = _class_weights([e.level for e in encoded], options.class_weight)
    weights = weights.to(device) if weights is not None else None
    history = []
    generator = random.Random(options.seed)
    for epoch in range(epochs):
        model.train()
        if responder_states is not None:
            model.responder_encoder.eval()
        batches = _length_buckets([len(e.response.input_ids) for e in encoded], options.batch_size, generator)
        totals = {"loss": 0.0, "level_loss": 0.0, "rationale_loss": 0.0}
        bar = tqdm(
            batches,
            desc=f"epoch {epoch + 1}/{epochs}",
            disable=not options.progress,
            file=sys.stderr,
            mininterval=10,
        )
        for chunk in bar:
            if responder_inputs is not None:
                level_logits, rationale_logits = _forward_from_layer(
                    model, encoded, chunk, seeker_states, responder_inputs, split_at, device
                )
            else:
                level_logits, rationale_logits = forward_batch(
                    model,
                    encoded,
                    chunk,
                    pad_id,
                    device=device,
                    seeker_states=seeker_states,
                    responder_states=responder_states,
                )
            levels = torch.tensor([encoded[i].level for i in chunk], device=device)
            targets = rationale_targets(encoded, chunk).to(device)
            loss, level_loss, rationale_loss = level_and_rationale_loss(
                level_logits,
                rationale_logits,
                levels,
                targets,
                lambda_ei=options.lambda_ei,
                lambda_re=options.lambda_re,
                class_weights=weights,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            scheduler.step()
            totals["loss"] += loss.item() * len(chunk)
            totals["level_loss"] += level_loss.item() * len(chunk)
            totals["rationale_loss"] += rationale_loss.item() * len(chunk)
        epoch_stats = {k: round(v / len(encoded), 4) for k, v in totals.items()}
        history.append(epoch_stats)
        if responder_states is None:
            print(f"epoch {epoch + 1}/{epochs}: {epoch_stats}", flush=True)
    return history


def _heads_only_baseline(
    options: TrainOptions,
    config: BiEncoderConfig,
    encoder: torch.nn.Module,
    train_enc: Sequence[EncodedRow],
    dev_enc: Sequence[EncodedRow],
    train_seekers: Sequence[torch.Tensor],
    dev_seekers: Sequence[torch.Tensor],
    train_states: Sequence[torch.Tensor],
    dev_states: Sequence[torch.Tensor],
    pad_id: int,
    device: torch.device,
) -> dict[str, float]:
    """The frozen pretrained encoder on both sides; only cross-attention and heads are trained."""
    _seed_everything(options.seed)
    baseline = EmpathyBiEncoder(config, None, encoder).to(device)
    for parameter in baseline.responder_encoder.parameters():
        parameter.requires_grad_(False)
    quiet = copy.copy(options)
    quiet.progress = False
    _fit(
        baseline,
        train_enc,
        train_seekers,
        pad_id,
        device,
        quiet,
        epochs=options.heads_only_epochs,
        lr=options.heads_only_lr,
        responder_states=train_states,
    )
    predictions = predict(
        baseline, dev_enc, pad_id, device=device, seeker_states=dev_seekers, responder_states=dev_states
    )
    return evaluate_predictions(dev_enc, predictions)


def _frozen_states(
    encoder: torch.nn.Module,
    encoded: Sequence[EncodedRow],
    pad_id: int,
    device: torch.device,
    *,
    split_at: int,
    cache_dir: str | None,
    max_length: int,
    base_path: Path,
) -> dict[str, list[torch.Tensor]]:
    """Per row: the seeker's last hidden states, and the response's states after ``split_at`` layers and last.

    Computed once (each distinct text once) and cached on disk under ``cache_dir``: the three mechanisms'
    CSVs hold the same pairs, so the ER, IP and EX runs share one cache.
    """
    key = hashlib.sha256()
    key.update(f"{base_path}|{max_length}|v2".encode())
    for e in encoded:
        key.update(b"|".join(str(i).encode() for i in e.seeker_ids) + b"#")
        key.update(b"|".join(str(i).encode() for i in e.response.input_ids) + b"$")
    file = Path(cache_dir) / f"states-{key.hexdigest()[:16]}.pt" if cache_dir else None
    if file is not None and file.is_file():
        print(f"using cached encoder states {file}", flush=True)
        stored = torch.load(file, map_location="cpu", weights_only=True)
        return _pick(stored, split_at)
    seekers = _unique_states(encoder, [e.seeker_ids for e in encoded], pad_id, device, layers=(-1,))
    # Every layer's output is kept, so runs adapting a different number of top layers share the cache.
    depth = len(_encoder_layers(encoder) or [])
    responses = _unique_states(
        encoder, [e.response.input_ids for e in encoded], pad_id, device, layers=(*range(depth), -1)
    )
    # fp16 in the cache (and in memory), so a first run and a cached run train on exactly the same inputs.
    stored = {"seeker": [t.half() for t in seekers[-1]]}
    stored.update({f"response_{layer}": [t.half() for t in responses[layer]] for layer in responses})
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        torch.save(stored, file)
    return _pick(stored, split_at)


def _pick(stored: dict[str, list[torch.Tensor]], split_at: int) -> dict[str, list[torch.Tensor]]:
    return {
        "seeker": [t.float() for t in stored["seeker"]],
        "response_split": [t.float() for t in stored[f"response_{split_at}"]],
        "response_last": [t.float() for t in stored["response_-1"]],
    }


@torch.inference_mode()
def _unique_states(
    encoder: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    pad_id: int,
    device: torch.device,
    *,
    layers: tuple[int, ...],
    batch_size: int = 64,
) -> dict[int, list[torch.Tensor]]:
    """Hidden states after the given layers (index into ``hidden_states``; 0 = embeddings) per sequence."""
    from tqdm import tqdm

    unique: dict[tuple[int, ...], int] = {}
    for seq in sequences:
        unique.setdefault(tuple(seq), len(unique))
    keys = list(unique)
    order = sorted(range(len(keys)), key=lambda i: len(keys[i]))
    found: dict[int, list[torch.Tensor | None]] = {layer: [None] * len(keys) for layer in layers}
    encoder.eval()
    for start in tqdm(range(0, len(order), batch_size), desc="encoding", file=sys.stderr, mininterval=10):
        chunk = order[start : start + batch_size]
        ids, mask = pad([list(keys[i]) for i in chunk], pad_id)
        output = encoder(input_ids=ids.to(device), attention_mask=mask.to(device), output_hidden_states=True)
        for layer in layers:
            hidden = output.hidden_states[layer].float().cpu()
            for row, index in enumerate(chunk):
                found[layer][index] = hidden[row, : len(keys[index])].clone()
    return {layer: [found[layer][unique[tuple(seq)]] for seq in sequences] for layer in layers}  # type: ignore[misc]


def _forward_from_layer(
    model: EmpathyBiEncoder,
    encoded: Sequence[EncodedRow],
    chunk: Sequence[int],
    seeker_states: Sequence[torch.Tensor],
    responder_inputs: Sequence[torch.Tensor],
    split_at: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run only the responder's layers from ``split_at`` up, on cached inputs, then the heads."""
    seekers, seeker_mask = stack_states([seeker_states[i] for i in chunk])
    hidden, mask = top_layer_states(
        model.responder_encoder, [responder_inputs[i] for i in chunk], split_at, device
    )
    ids = torch.zeros_like(mask)
    return model.score(seekers.to(device), seeker_mask.to(device), ids, mask, responder_states=hidden)


def top_layer_states(
    encoder: torch.nn.Module, inputs: Sequence[torch.Tensor], split_at: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(last hidden states, mask) of a batch whose states after ``split_at`` layers are cached: only the
    layers above run (the ones with adapters)."""
    hidden, mask = stack_states(list(inputs))
    hidden, mask = hidden.to(device), mask.to(device)
    additive = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
    for layer in _encoder_layers(encoder)[split_at:]:
        out = layer(hidden, additive)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden, mask


def _encoder_layers(encoder: torch.nn.Module):
    """The transformer layers of a BERT-like encoder (``encoder.layer``), or None for other architectures."""
    inner = getattr(encoder, "encoder", None)
    layers = getattr(inner, "layer", None)
    return layers if isinstance(layers, torch.nn.ModuleList) else None


def _layer_index(path: str) -> int | None:
    parts = path.split(".")
    for i, part in enumerate(parts[:-1]):
        if part == "layer" and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None


def _length_buckets(lengths: Sequence[int], batch_size: int, generator: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length (less padding): sort within pools of 50 batches, shuffle batches."""
    order = list(range(len(lengths)))
    generator.shuffle(order)
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        block = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches.extend(block[i : i + batch_size] for i in range(0, len(block), batch_size))
    generator.shuffle(batches)
    return batches


def _class_weights(levels: Sequence[int], mode: str) -> torch.Tensor | None:
    if mode == "none":
        return None
    counts = torch.tensor([max(1, sum(1 for x in levels if x == k)) for k in range(3)], dtype=torch.float)
    inverse = counts.sum() / counts
    if mode == "sqrt":
        inverse = inverse.sqrt()
    elif mode != "balanced":
        raise ValueError(f"--class-weight must be none, sqrt or balanced, not {mode!r}")
    return inverse / (inverse * counts).sum() * counts.sum()


def _device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but no CUDA GPU is visible")
    return torch.device(requested)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _brief(scores: dict[str, float]) -> str:
    return ", ".join(f"{k} {v}" for k, v in scores.items())
