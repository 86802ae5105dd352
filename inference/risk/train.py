"""Train PeerCare's offline risk model: LoRA (or a frozen encoder) + a multi-label head, then calibrate.

Labels: suicidal (SDCNL), stress (Dreaddit), depression (DepSeverity joined to Dreaddit). A dataset that
does not label a label contributes nothing to that label's loss (masked binary cross-entropy).
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from inference.contrastive import save_adapter
from inference.risk import calibration as cal
from inference.risk.data import DEFAULT_DATA_DIR, RiskTable, load_risk_table
from inference.risk.encoding import padded_batches, plan_windows
from inference.risk.features import cached_window_features, load_encoder
from inference.risk.heads import LabelSplitRiskModel, PooledRiskModel, RiskHead
from inference.risk.lexical import LEXICAL_FILE, LexicalHead, fit_lexical_head
from inference.risk.model_folder import (
    ADAPTED_HEAD_FILE,
    CALIBRATION_FILE,
    POOLED_CONFIG_FILE,
    POOLED_HEAD_FILE,
    Calibration,
    PooledConfig,
    write_json,
)
from inference.types import RiskThresholds

log = logging.getLogger(__name__)

MULTI_LABEL = "multi_label_classification"


@dataclass
class TrainOptions:
    output: Path
    data_dir: Path = DEFAULT_DATA_DIR
    base_model: str = "all-MiniLM-L6-v2"
    mode: str = "lora"  # "lora" (tune low-rank adapters + head) or "head" (frozen encoder)
    seed: int = 13
    dev_share: float = 0.15
    epochs: int = 3
    batch_size: int = 32
    lr_head: float = 2e-3
    lr_lora: float = 5e-4
    weight_decay: float = 0.01
    lora_rank: int = 8
    lora_alpha: int = 16
    # Encoder blocks (0-based) that get adapters: with only the top blocks tuned, backpropagation stops there.
    lora_blocks: tuple[int, ...] = (3, 4, 5)
    layers: tuple[int, ...] = (4, 5, 6)
    hidden: int = 0
    window_tokens: int = 256
    overlap_tokens: int = 64
    threads: int = 2
    cache_dir: Path = Path("runs/risk/feature-cache")
    high_recall: float = 0.9
    # A model folder whose trained head starts the LoRA run (LoRA starts as the identity, so training
    # starts from that model's scores instead of from a random head).
    init_head: Path | None = None
    # Labels that also get a word-level TF-IDF logit added to the head's (inference.risk.lexical).
    lexical_labels: tuple[str, ...] = ()
    # LoRA mode: the tuned encoder answers only these labels; the others keep ``init_head`` over the frozen
    # encoder (inference.risk.heads.LabelSplitRiskModel). Training itself is unchanged (all labels).
    adapter_labels: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def masked_bce(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, pos_weight: torch.Tensor
) -> torch.Tensor:
    """Weighted mean binary cross-entropy over the (row, label) cells that carry a label.

    Cells a dataset does not label have weight 0 and add nothing, whatever the model predicts there.
    """
    weights = weights * (labels >= 0)
    target = labels.clamp(min=0).float()
    loss = nn.functional.binary_cross_entropy_with_logits(
        logits, target, pos_weight=pos_weight, reduction="none"
    )
    return (loss * weights).sum() / weights.sum().clamp(min=1e-6)


def _pos_weight(table: RiskTable) -> torch.Tensor:
    """Per label, weighted negatives / weighted positives: both classes pull equally on each label."""
    weights = []
    for index in range(len(table.label_names)):
        column, weight = table.labels[:, index], table.weights[:, index]
        pos, neg = weight[column == 1].sum(), weight[column == 0].sum()
        weights.append(neg / max(pos, 1e-6))
    return torch.tensor(weights, dtype=torch.float32)


def _post_features(features: np.ndarray, owners: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n, features.shape[1]), dtype=np.float32)
    np.add.at(out, owners, features.astype(np.float32))
    return out / np.bincount(owners, minlength=n)[:, None]


class RiskTrainer:
    def __init__(self, options: TrainOptions) -> None:
        self.options = options
        torch.set_num_threads(options.threads)
        set_seed(options.seed)
        self.table = load_risk_table(options.data_dir, seed=options.seed, dev_share=options.dev_share)
        self.labels = self.table.label_names
        self.encoder, self.tokenizer = load_encoder(options.base_model)
        self.dim = self.encoder.config.hidden_size
        self.columns = np.concatenate(
            [np.arange(layer * self.dim, (layer + 1) * self.dim) for layer in options.layers]
        )
        started = time.perf_counter()
        features, owners = cached_window_features(
            self.encoder,
            self.tokenizer,
            self.table.texts,
            window_tokens=options.window_tokens,
            overlap_tokens=options.overlap_tokens,
            cache_dir=options.cache_dir,
            name="risk-table",
        )
        self.window_features = features[:, self.columns]
        self.owners = owners
        log.info("frozen features ready in %.0fs", time.perf_counter() - started)
        self.head = RiskHead(len(self.columns), len(self.labels), hidden=options.hidden)
        train = self.table.split == "train"
        post = _post_features(self.window_features, owners, len(self.table))[train]
        self.head.feature_mean.copy_(torch.from_numpy(post.mean(axis=0)))
        self.head.feature_scale.copy_(torch.from_numpy(post.std(axis=0) + 1e-4))
        self.pos_weight = _pos_weight(self.table.subset(train))
        self.lexical: LexicalHead | None = None
        if options.init_head is not None:
            from safetensors.torch import load_file

            state = load_file(Path(options.init_head) / POOLED_HEAD_FILE)
            self.head.load_state_dict({key: value.float() for key, value in state.items()})
            log.info("head initialised from %s", options.init_head)
        # The head the labels outside ``adapter_labels`` keep (training changes ``self.head``).
        self.frozen_head = copy.deepcopy(self.head).eval() if options.adapter_labels else None

    # -- training --------------------------------------------------------------------------------

    def fit_lexical(self) -> None:
        """Fit the word-level head on the train split for ``options.lexical_labels`` (deterministic)."""
        self.lexical = None
        wanted = tuple(self.options.lexical_labels)
        if not wanted:
            return
        unknown = sorted(set(wanted) - set(self.labels))
        if unknown:
            raise ValueError(f"--lexical-labels {unknown} are not labels of this model {list(self.labels)}")
        columns = [self.labels.index(label) for label in wanted]
        train = np.flatnonzero(self.table.split == "train")
        self.lexical = fit_lexical_head(
            [self.table.texts[row] for row in train],
            self.table.labels[np.ix_(train, columns)],
            self.table.weights[np.ix_(train, columns)],
            wanted,
        )

    def fit(self) -> PooledRiskModel:
        self.fit_lexical()
        if self.options.mode == "head":
            self._fit_head_on_cached_features()
            self.model = PooledRiskModel(self.encoder, self.head, self.options.layers).eval()
        elif self.options.mode == "lora":
            self._check_adapter_labels()
            self.model = self._fit_lora()
            if self.options.adapter_labels:
                self.model = self._split(self.model)
        else:
            raise ValueError(f"unknown training mode {self.options.mode!r}: use lora or head")
        return self.model

    def _check_adapter_labels(self) -> None:
        wanted = self.options.adapter_labels
        if not wanted:
            return
        unknown = sorted(set(wanted) - set(self.labels))
        if unknown:
            raise ValueError(f"--adapter-labels {unknown} are not labels of this model {list(self.labels)}")
        if self.options.init_head is None:
            raise ValueError("--adapter-labels needs --init-head: the trained head the other labels keep")

    def _split(self, tuned: PooledRiskModel) -> LabelSplitRiskModel:
        """The tuned model for ``adapter_labels``, the frozen encoder + ``init_head`` for the rest."""
        plain, _ = load_encoder(self.options.base_model)
        base = PooledRiskModel(plain, self.frozen_head, self.options.layers)
        columns = [self.labels.index(label) for label in self.options.adapter_labels]
        return LabelSplitRiskModel(base, tuned, columns).eval()

    def _fit_head_on_cached_features(self) -> None:
        o = self.options
        train = np.flatnonzero(self.table.split[self.owners] == "train")
        x = torch.from_numpy(self.window_features[train].astype(np.float32))
        y = torch.from_numpy(self.table.labels[self.owners[train]].astype(np.int64))
        # Long posts have many windows; weight each window 1/windows so every post counts once.
        counts = np.bincount(self.owners, minlength=len(self.table))
        cells = self.table.weights[self.owners[train]] / counts[self.owners[train], None]
        w = torch.from_numpy(cells.astype(np.float32))
        optimiser = torch.optim.AdamW(self.head.parameters(), lr=o.lr_head, weight_decay=o.weight_decay)
        best, best_state = -1.0, None
        for epoch in range(o.epochs * 10):
            self.head.train()
            order = torch.randperm(len(x))
            for start in range(0, len(x), o.batch_size * 4):
                batch = order[start : start + o.batch_size * 4]
                loss = masked_bce(self.head(x[batch]), y[batch], w[batch], self.pos_weight)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            score = self._dev_score_from_cache()
            if score > best:
                best, best_state = score, {k: v.clone() for k, v in self.head.state_dict().items()}
            log.info("head epoch %d: dev mean balanced accuracy %.3f", epoch + 1, score)
        self.head.load_state_dict(best_state)
        self.head.eval()

    def _dev_score_from_cache(self) -> float:
        self.head.eval()
        with torch.no_grad():
            logits = self.head(torch.from_numpy(self.window_features.astype(np.float32))).numpy()
        post = np.full((len(self.table), len(self.labels)), -np.inf, dtype=np.float32)
        np.maximum.at(post, self.owners, logits)
        return self._mean_dev_balanced_accuracy(post)

    def _mean_dev_balanced_accuracy(self, post_logits: np.ndarray) -> float:
        dev = self.table.split == "dev"
        scores = []
        for index in range(len(self.labels)):
            y = self.table.labels[dev, index]
            known = (y >= 0) & ~self.table.silver[dev, index]
            scores.append(cal.balanced_accuracy(y[known], post_logits[dev, index][known] >= 0))
        return float(np.mean(scores))

    def _fit_lora(self) -> PooledRiskModel:
        from peft import LoraConfig, get_peft_model

        o = self.options
        lora = LoraConfig(
            r=o.lora_rank,
            lora_alpha=o.lora_alpha,
            lora_dropout=0.1,
            layers_to_transform=list(o.lora_blocks),
            layers_pattern="layer",
            target_modules=[
                "query",
                "key",
                "value",
                "attention.output.dense",
                "intermediate.dense",
                "output.dense",
            ],
        )
        self.peft_encoder = get_peft_model(self.encoder, lora)
        model = PooledRiskModel(self.peft_encoder, self.head, o.layers)
        plan = plan_windows(
            self.tokenizer, self.table.texts, window_tokens=o.window_tokens, overlap_tokens=o.overlap_tokens
        )
        windows_of: dict[int, list[int]] = {}
        for window, owner in enumerate(plan.owners):
            windows_of.setdefault(owner, []).append(window)
        train_rows = np.flatnonzero(self.table.split == "train")
        labels = torch.from_numpy(self.table.labels.astype(np.int64))
        cell_weights = torch.from_numpy(self.table.weights)
        optimiser = torch.optim.AdamW(
            [
                {"params": [p for p in self.peft_encoder.parameters() if p.requires_grad], "lr": o.lr_lora},
                {"params": self.head.parameters(), "lr": o.lr_head},
            ],
            weight_decay=o.weight_decay,
        )
        steps = o.epochs * int(np.ceil(len(train_rows) / o.batch_size))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimiser, lambda step: min(1.0, (step + 1) / max(1, steps // 10)) * max(0.0, 1 - step / steps)
        )
        rng = np.random.default_rng(o.seed)
        pad = self.tokenizer.pad_token_id or 0
        best, best_state = -1.0, None
        step = 0
        for epoch in range(o.epochs):
            model.train()
            started = time.perf_counter()
            # One random window per post per epoch: every part of a long post is seen over the epochs.
            chosen = {row: int(rng.choice(windows_of[row])) for row in train_rows}
            order = rng.permutation(train_rows)
            # Sort within chunks of 20 batches by length: much less padding, still shuffled.
            chunk = o.batch_size * 20
            batches = []
            for start in range(0, len(order), chunk):
                part = sorted(order[start : start + chunk], key=lambda r: len(plan.input_ids[chosen[r]]))
                batches += [part[i : i + o.batch_size] for i in range(0, len(part), o.batch_size)]
            rng.shuffle(batches)
            total = 0.0
            for number, rows in enumerate(batches):
                ids = [plan.input_ids[chosen[r]] for r in rows]
                ((within, input_ids, mask),) = padded_batches(ids, pad_id=pad, batch_size=len(ids))
                picked = [rows[i] for i in within]
                loss = masked_bce(
                    model(input_ids, mask), labels[picked], cell_weights[picked], self.pos_weight
                )
                optimiser.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimiser.step()
                schedule.step()
                step += 1
                total += float(loss.detach())
                if number % 20 == 0:
                    log.info(
                        "epoch %d batch %d/%d loss %.4f (%.0fs)",
                        epoch + 1,
                        number,
                        len(batches),
                        total / (number + 1),
                        time.perf_counter() - started,
                    )
            model.eval()
            dev_logits = self.post_logits(model, np.flatnonzero(self.table.split == "dev"), plan)
            full = np.zeros((len(self.table), len(self.labels)), dtype=np.float32)
            full[self.table.split == "dev"] = dev_logits
            score = self._mean_dev_balanced_accuracy(full)
            log.info(
                "epoch %d done in %.0fs: dev mean balanced accuracy %.3f",
                epoch + 1,
                time.perf_counter() - started,
                score,
            )
            if score > best:
                best = score
                best_state = {
                    k: v.detach().clone()
                    for k, v in model.state_dict().items()
                    if "lora_" in k or k.startswith("head.")
                }
        model.load_state_dict(best_state, strict=False)
        model.eval()
        self.plan = plan
        return model

    @torch.inference_mode()
    def post_logits(self, model: PooledRiskModel, rows: np.ndarray, plan=None) -> np.ndarray:
        """Per-post logits (max over the post's windows) for ``rows`` of the table."""
        o = self.options
        if plan is None:
            plan = getattr(self, "plan", None) or plan_windows(
                self.tokenizer,
                self.table.texts,
                window_tokens=o.window_tokens,
                overlap_tokens=o.overlap_tokens,
            )
            self.plan = plan
        wanted = set(int(r) for r in rows)
        windows = [w for w, owner in enumerate(plan.owners) if owner in wanted]
        ids = [plan.input_ids[w] for w in windows]
        logits = np.zeros((len(windows), len(self.labels)), dtype=np.float32)
        pad = self.tokenizer.pad_token_id or 0
        for chunk, input_ids, mask in padded_batches(ids, pad_id=pad, batch_size=64):
            logits[chunk] = model(input_ids, mask).float().numpy()
        position = {int(r): i for i, r in enumerate(rows)}
        out = np.full((len(rows), len(self.labels)), -np.inf, dtype=np.float32)
        np.maximum.at(out, np.asarray([position[plan.owners[w]] for w in windows]), logits)
        if self.lexical is not None:
            lexical = self.lexical.logits([self.table.texts[int(row)] for row in rows])
            for column, label in enumerate(self.lexical.labels):
                out[:, self.labels.index(label)] += lexical[:, column]
        return out

    # -- calibration and saving --------------------------------------------------------------------

    def calibrate(self, model: PooledRiskModel) -> tuple[Calibration, dict[str, float]]:
        o = self.options
        dev_rows = np.flatnonzero(self.table.split == "dev")
        logits = self.post_logits(model, dev_rows)
        temperature: dict[str, float] = {}
        decision: dict[str, float] = {}
        probabilities: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        sources = self.table.source[dev_rows]
        for index, label in enumerate(self.labels):
            y = self.table.labels[dev_rows, index]
            gold = (y >= 0) & ~self.table.silver[dev_rows, index]
            temperature[label] = cal.fit_temperature(logits[gold, index], y[gold])
            p = cal.sigmoid(logits[gold, index] / temperature[label])
            probabilities[label] = (p, y[gold])
            # Decision cut-offs are for reporting on the published datasets: chosen on their dev rows only.
            published = sources[gold] != "chat"
            decision[label] = cal.youden_threshold(p[published], y[gold][published])
        p, y = probabilities["suicidal"]
        # The high tier is "model over its cut-off OR a high crisis phrase": posts the phrase layer already
        # puts in the high tier count as caught, so the cut-off is set for the recall of the tier as a whole.
        suicidal = self.labels.index("suicidal")
        gold_rows = dev_rows[
            (self.table.labels[dev_rows, suicidal] >= 0) & ~self.table.silver[dev_rows, suicidal]
        ]
        phrase_high = np.asarray([_has_high_phrase(self.table.texts[row]) for row in gold_rows])
        high = {"suicidal": cal.threshold_for_recall(p, y, o.high_recall, caught=phrase_high)}
        elevated = {
            "suicidal": min(high["suicidal"], cal.threshold_for_recall(p, y, 0.97, caught=phrase_high)),
            "depression": decision["depression"],
            "stress": cal.threshold_for_precision(*probabilities["stress"], 0.9),
        }
        rounded = RiskThresholds(
            elevated={k: round(v, 4) for k, v in elevated.items()},
            high={k: round(v, 4) for k, v in high.items()},
        )
        method = (
            "per-label temperature scaling on the dev split (min cross-entropy); high suicidal = largest cut-off "
            f"with dev high-tier recall >= {o.high_recall} (model cut-off OR a high crisis phrase); elevated "
            "suicidal = the same with recall >= 0.97; elevated depression = "
            "Youden's J; elevated stress = dev precision >= 0.9"
        )
        return Calibration({k: round(v, 4) for k, v in temperature.items()}, rounded, method), {
            k: round(v, 4) for k, v in decision.items()
        }

    def save(
        self, model: PooledRiskModel, calibration: Calibration, decision: dict[str, float], metrics: dict
    ) -> Path:
        from safetensors.torch import save_file

        o = self.options
        out = Path(o.output)
        out.mkdir(parents=True, exist_ok=True)
        adapter = None
        if o.mode == "lora":
            adapter = "adapter"
            save_adapter(self.peft_encoder, out / adapter, o.base_model)
        split = bool(o.adapter_labels)
        heads = {POOLED_HEAD_FILE: self.frozen_head if split else self.head}
        if split:
            heads[ADAPTED_HEAD_FILE] = self.head
        for name, head in heads.items():
            save_file({k: v.detach().half().contiguous() for k, v in head.state_dict().items()}, out / name)
        config = PooledConfig(
            base_model=o.base_model,
            labels=self.labels,
            problem_type=MULTI_LABEL,
            layers=o.layers,
            in_features=len(self.columns),
            hidden=o.hidden,
            window_tokens=o.window_tokens,
            overlap_tokens=o.overlap_tokens,
            adapter=adapter,
            adapter_labels=tuple(o.adapter_labels),
            adapted_head=ADAPTED_HEAD_FILE if split else None,
        )
        write_json(out / POOLED_CONFIG_FILE, config.to_json())
        self.save_calibration(calibration, decision, metrics)
        return out

    def save_calibration(
        self,
        calibration: Calibration,
        decision: dict[str, float],
        metrics: dict,
        *,
        recalibrated: bool = False,
    ) -> None:
        out = Path(self.options.output)
        payload = calibration.to_json()
        payload["decision"] = decision
        write_json(out / CALIBRATION_FILE, payload)
        options = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self.options).items()}
        record = {"options": options, "metrics": metrics}
        if recalibrated and (out / "training.json").is_file():
            # Keep the options the weights were trained with; note that calibration was re-run.
            record = json.loads((out / "training.json").read_text(encoding="utf-8"))
            record["metrics"] = metrics
            record["recalibrated"] = True
            record["options"]["lexical_labels"] = list(self.options.lexical_labels)
        write_json(out / "training.json", record)


def _save_lexical(trainer: RiskTrainer) -> None:
    """Write the word-level head beside the model, or remove a stale one when this model has none."""
    path = Path(trainer.options.output) / LEXICAL_FILE
    if trainer.lexical is not None:
        trainer.lexical.save(path.parent)
    else:
        path.unlink(missing_ok=True)


def _has_high_phrase(text: str) -> bool:
    from inference.risk.phrases import match_crisis_phrases
    from inference.risk.tiers import phrase_tier
    from inference.types import RiskTier

    return any(phrase_tier(match) == RiskTier.HIGH for match in match_crisis_phrases(text))


def recalibrate(options: TrainOptions) -> dict:
    """Re-run calibration for the model already in ``options.output`` (no training)."""
    from inference.risk.scorer import _load_pooled

    trainer = RiskTrainer(options)
    model, _, _, _ = _load_pooled(Path(options.output), device="cpu", dtype=None)
    trainer.fit_lexical()
    return _calibrate_and_save(trainer, model, started=time.perf_counter(), weights=False)


def train_risk_model(options: TrainOptions) -> dict:
    """Train, calibrate and save; returns the dev metrics written to training.json."""
    started = time.perf_counter()
    trainer = RiskTrainer(options)
    model = trainer.fit()
    return _calibrate_and_save(trainer, model, started=started, weights=True)


def _calibrate_and_save(
    trainer: RiskTrainer, model: PooledRiskModel, *, started: float, weights: bool
) -> dict:
    options = trainer.options
    calibration, decision = trainer.calibrate(model)
    dev_rows = np.flatnonzero(trainer.table.split == "dev")
    logits = trainer.post_logits(model, dev_rows)
    metrics: dict = {"dev": {}}
    for index, label in enumerate(trainer.labels):
        y = trainer.table.labels[dev_rows, index]
        known = (y >= 0) & ~trainer.table.silver[dev_rows, index] & (trainer.table.source[dev_rows] != "chat")
        p = cal.sigmoid(logits[known, index] / calibration.temperature[label])
        metrics["dev"][label] = {
            "balanced_accuracy": round(cal.balanced_accuracy(y[known], p >= decision[label]), 4),
            "f1": round(cal.f1(y[known], p >= decision[label]), 4),
            "n": int(known.sum()),
        }
    # How often the high tier fires on dev posts assumed not suicidal (Dreaddit's stress/anxiety/... posts).
    suicidal = trainer.labels.index("suicidal")
    silver = trainer.table.silver[dev_rows, suicidal]
    p = cal.sigmoid(logits[silver, suicidal] / calibration.temperature["suicidal"])
    metrics["dev"]["high_tier_rate_on_dreaddit"] = round(
        float((p >= calibration.thresholds.high["suicidal"]).mean()), 4
    )
    metrics["seconds"] = round(time.perf_counter() - started, 1)
    if weights:
        trainer.save(model, calibration, decision, metrics)
    else:
        trainer.save_calibration(calibration, decision, metrics, recalibrated=True)
    _save_lexical(trainer)
    log.info("risk model saved to %s: %s", options.output, json.dumps(metrics))
    return metrics
