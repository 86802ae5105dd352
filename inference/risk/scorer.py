"""Score posts for risk with any Hugging Face sequence classifier (or PeerCare's compact shipped model).

Long posts are split into overlapping token windows; each label's probability is its maximum over the
windows, so a crisis sentence deep in a long post is not averaged away. Probabilities become a tier with
``assign_tier`` and the transparent crisis-phrase layer (``phrases.py``), which can only raise a tier.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from inference.contrastive import adapted_copy as _adapted_copy
from inference.contrastive import merge_adapter as _merge_adapter
from inference.errors import InputRejected, ModelLoadError
from inference.risk.crisis import (
    CRISIS_LABEL,
    CrisisHead,
    CrisisHeadError,
    SentenceEncoder,
    load_base_encoder,
)
from inference.risk.encoding import (
    content_tokens,
    max_over_windows,
    padded_batches,
    plan_windows,
    special_tokens,
)
from inference.risk.lexical import LexicalHead
from inference.risk.model_folder import (
    ALL_LABELS,
    POOLED_HEAD_FILE,
    PROBLEM_TYPES,
    PooledConfig,
    is_pooled_folder,
    read_calibration,
    read_pooled_config,
    sane_default_thresholds,
)
from inference.risk.phrases import PhraseBook, default_phrase_book
from inference.risk.tiers import assign_tier
from inference.sources import resolve_source
from inference.types import RiskResult, RiskThresholds

log = logging.getLogger(__name__)

SETTING = "RISK_MODEL"
MULTI_LABEL = "multi_label_classification"
SINGLE_LABEL = "single_label_classification"
# Models whose position ids start after the padding index, so two positions are unusable.
_OFFSET_POSITION_MODELS = frozenset({"roberta", "xlm-roberta", "longformer", "camembert", "bart", "mpnet"})
MAX_WINDOW_TOKENS = 4096
# Tokens per forward pass; with short windows many fit in one batch, with Longformer-4096 only two.
TOKENS_PER_BATCH = 8192


class _DefaultThresholds:
    """``scorer.default_thresholds`` is that model's calibrated thresholds; on the class,
    ``RiskScorer.default_thresholds(source)`` reads them from a model folder without loading weights."""

    def __get__(self, instance: RiskScorer | None, owner: type[RiskScorer]) -> Any:
        if instance is None:
            return owner.thresholds_for_source
        return instance._default_thresholds


class RiskScorer:
    """Per-label risk probabilities and a tier for each text."""

    default_thresholds = _DefaultThresholds()

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        labels: Sequence[str],
        problem_type: str,
        default_thresholds: RiskThresholds,
        thresholds: RiskThresholds | None = None,
        temperature: dict[str, float] | None = None,
        window_tokens: int = 256,
        overlap_tokens: int = 64,
        device: str = "cpu",
        phrase_book: PhraseBook | None = None,
        lexical: LexicalHead | None = None,
        crisis: tuple[CrisisHead, SentenceEncoder] | None = None,
    ) -> None:
        if problem_type not in PROBLEM_TYPES:
            raise ModelLoadError(
                f"risk problem type must be one of {', '.join(PROBLEM_TYPES)}, not {problem_type!r}",
                setting="RISK_PROBLEM_TYPE",
            )
        self.model = model
        self.tokenizer = tokenizer
        self.labels: tuple[str, ...] = tuple(labels)
        self.problem_type = problem_type
        self._default_thresholds = default_thresholds
        self.thresholds = thresholds or default_thresholds
        self.temperature = dict(temperature or {})
        self.window_tokens = window_tokens
        self.overlap_tokens = overlap_tokens
        self.device = device
        self.phrase_book = phrase_book or default_phrase_book()
        if lexical is not None:
            unknown = sorted(set(lexical.labels) - set(self.labels))
            if unknown or problem_type != MULTI_LABEL:
                raise ModelLoadError(
                    f"the lexical head's labels {unknown or list(lexical.labels)} do not fit this "
                    f"{problem_type} model's labels {list(self.labels)}",
                    setting=SETTING,
                )
        self.lexical = lexical
        # The crisis head (and the sentence encoder it reads) adds a ``crisis`` probability: what the high
        # tier is decided by in models that ship one (see inference/risk/crisis.py).
        self.crisis = crisis
        self._prefix, self._suffix = special_tokens(tokenizer)
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._batch_size = max(1, TOKENS_PER_BATCH // window_tokens)

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        source: str | os.PathLike[str],
        *,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        problem_type: str | None = None,
        thresholds: RiskThresholds | None = None,
        window_tokens: int | None = None,
        overlap_tokens: int | None = None,
    ) -> RiskScorer:
        """Load a risk model from a local folder, ``shipped:NAME``, a MiniLM alias or a (cached) hub id.

        ``problem_type`` (None or "auto" = the model's own config) picks sigmoid per label
        (multi_label_classification) or softmax over labels (single_label_classification).
        ``thresholds`` overrides the folder's calibrated defaults for this scorer's own tiers.
        """
        folder = resolve_source(source, setting=SETTING)
        if folder.is_file():
            raise ModelLoadError(
                f"risk model {os.fspath(source)!r} must be a folder, not a file", setting=SETTING
            )
        override = None if problem_type in (None, "auto") else problem_type
        calibration = read_calibration(folder, setting=SETTING)
        frozen_encoder = None
        if is_pooled_folder(folder):
            model, tokenizer, config, frozen_encoder = _load_pooled(folder, device=device, dtype=dtype)
            labels, own_type = config.labels, config.problem_type
            window = window_tokens or config.window_tokens
            overlap = overlap_tokens if overlap_tokens is not None else config.overlap_tokens
        else:
            model, tokenizer, labels, own_type, window = _load_hf(folder, device=device, dtype=dtype)
            window = window_tokens or window
            overlap = overlap_tokens if overlap_tokens is not None else min(64, window // 4)
        defaults = calibration.thresholds if calibration else sane_default_thresholds(labels)
        scorer = cls(
            model,
            tokenizer,
            labels=labels,
            problem_type=override or own_type,
            default_thresholds=defaults,
            thresholds=thresholds,
            temperature=calibration.temperature if calibration else None,
            window_tokens=window,
            overlap_tokens=overlap,
            device=device,
            lexical=_load_lexical(folder),
            crisis=_load_crisis(
                folder, frozen_encoder, tokenizer if frozen_encoder is not None else None, device
            ),
        )
        log.info(
            "risk model loaded: %d labels, %s, %d-token windows, %s",
            len(labels),
            scorer.problem_type,
            window,
            "calibrated thresholds" if calibration else "default thresholds",
        )
        return scorer

    @classmethod
    def thresholds_for_source(cls, source: str | os.PathLike[str]) -> RiskThresholds:
        """A model folder's calibrated thresholds (or sane defaults for its labels), without loading weights."""
        folder = resolve_source(source, setting=SETTING)
        calibration = read_calibration(folder, setting=SETTING)
        if calibration is not None:
            return calibration.thresholds
        if is_pooled_folder(folder):
            return sane_default_thresholds(read_pooled_config(folder, setting=SETTING).labels)
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(folder)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"cannot read the risk model config in {folder}: {exc}", setting=SETTING
            ) from exc
        return sane_default_thresholds(_labels_of(config))

    # -- scoring ---------------------------------------------------------------------------------

    @property
    def output_labels(self) -> tuple[str, ...]:
        """Every probability ``probabilities`` returns: the model's labels, then ``crisis`` when it has that head."""
        return (*self.labels, CRISIS_LABEL) if self.crisis is not None else self.labels

    def token_length(self, text: str) -> int:
        """Tokens the model reads for ``text`` (all windows together, special tokens once)."""
        return len(content_tokens(self.tokenizer, [text])[0]) + len(self._prefix) + len(self._suffix)

    @torch.inference_mode()
    def probabilities(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Per-label probabilities for each text (max over its windows); no tiers, no phrases."""
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputRejected(f"risk text {position} must be text, not {type(text).__name__}")
            if not text.strip():
                raise InputRejected(f"risk text {position} is empty: nothing to score")
        if not texts:
            return []
        plan = plan_windows(
            self.tokenizer, texts, window_tokens=self.window_tokens, overlap_tokens=self.overlap_tokens
        )
        scores = torch.empty((len(plan.input_ids), len(self.labels)), dtype=torch.float32)
        for chunk, ids, mask in padded_batches(
            plan.input_ids, pad_id=self._pad_id, batch_size=self._batch_size, device=self.device
        ):
            scores[chunk] = self._window_scores(ids, mask)
        per_text = max_over_windows(scores, plan.owners, plan.n_texts)
        if self.problem_type == MULTI_LABEL:
            # sigmoid is monotone, so the max over windows of each window's probability is the sigmoid of the
            # max logit; the lexical logit belongs to the whole text and is added once.
            per_text = torch.sigmoid((per_text + self._lexical_logits(texts)) / self._temperatures())
        rows = [dict(zip(self.labels, (float(p) for p in row), strict=True)) for row in per_text.tolist()]
        if self.crisis is not None:
            head, encoder = self.crisis
            for row, crisis in zip(rows, head.probabilities(encoder, texts), strict=True):
                row[CRISIS_LABEL] = crisis
        return rows

    def predict(self, texts: Sequence[str]) -> list[RiskResult]:
        """Probabilities, tier and crisis-phrase matches for each text, in order."""
        results = []
        for text, probabilities in zip(texts, self.probabilities(texts), strict=True):
            matches = self.phrase_book.matches(text)
            tier, triggered = assign_tier(probabilities, self.thresholds, matches)
            results.append(RiskResult(probabilities, tier, triggered, matches))
        return results

    def _window_scores(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Raw logits for sigmoid (multi-label) models; softmax probabilities for single-label ones."""
        output = self.model(input_ids=ids, attention_mask=mask)
        logits = (output if isinstance(output, torch.Tensor) else output.logits).float().cpu()
        if self.problem_type == MULTI_LABEL:
            return logits
        return torch.softmax(logits / self.temperature.get(ALL_LABELS, 1.0), dim=-1)

    def _lexical_logits(self, texts: Sequence[str]) -> torch.Tensor:
        """The word-level head's logit for the labels it covers, 0 for the others (see inference.risk.lexical)."""
        out = torch.zeros((len(texts), len(self.labels)), dtype=torch.float32)
        if self.lexical is not None:
            values = torch.from_numpy(self.lexical.logits(texts))
            for column, label in enumerate(self.lexical.labels):
                out[:, self.labels.index(label)] = values[:, column]
        return out

    def _temperatures(self) -> torch.Tensor:
        return torch.tensor([self.temperature.get(label, 1.0) for label in self.labels], dtype=torch.float32)


# -- loaders ---------------------------------------------------------------------------------------


def _labels_of(config: Any) -> tuple[str, ...]:
    id2label = getattr(config, "id2label", None) or {}
    ordered = sorted(((int(key), str(value)) for key, value in id2label.items()), key=lambda pair: pair[0])
    labels = tuple(label for _, label in ordered)
    if len(labels) != getattr(config, "num_labels", len(labels)) or not labels:
        raise ModelLoadError("the risk model's config has no usable id2label", setting=SETTING)
    return labels


def _default_problem_type(config: Any, n_labels: int) -> str:
    own = getattr(config, "problem_type", None)
    if own in PROBLEM_TYPES:
        return own
    # A single logit can only be a sigmoid; several logits without a declared type follow transformers'
    # own default (softmax, cross-entropy).
    return MULTI_LABEL if n_labels == 1 else SINGLE_LABEL


def _window_of(config: Any, tokenizer: Any) -> int:
    positions = int(getattr(config, "max_position_embeddings", 512) or 512)
    if getattr(config, "model_type", "") in _OFFSET_POSITION_MODELS:
        positions -= 2
    limit = getattr(tokenizer, "model_max_length", positions) or positions
    return max(8, min(positions, int(limit) if limit < 1_000_000 else positions, MAX_WINDOW_TOKENS))


def _load_hf(folder: Path, *, device: str, dtype: torch.dtype | None):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=dtype)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(
            f"{folder} is not a loadable sequence classifier ({type(exc).__name__}: {exc})", setting=SETTING
        ) from exc
    labels = _labels_of(config)
    model.to(device).eval()
    return model, tokenizer, labels, _default_problem_type(config, len(labels)), _window_of(config, tokenizer)


def _load_lexical(folder: Path) -> LexicalHead | None:
    try:
        return LexicalHead.load(folder)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(
            f"cannot read the lexical head in {folder}: {type(exc).__name__}: {exc}", setting=SETTING
        ) from exc


def _load_pooled(folder: Path, *, device: str, dtype: torch.dtype | None):
    from transformers import AutoModel, AutoTokenizer

    from inference.risk.heads import LabelSplitRiskModel, PooledRiskModel

    config = read_pooled_config(folder, setting=SETTING)
    base = resolve_source(config.base_model, setting=SETTING)
    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
        encoder = AutoModel.from_pretrained(base)
        tuned = _tuned_encoder(encoder, folder, config) if config.adapter else None
        head = _load_head(folder / POOLED_HEAD_FILE, config)
        adapted_head = _load_head(folder / config.adapted_head, config) if config.adapted_head else None
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(
            f"cannot load the risk model in {folder}: {type(exc).__name__}: {exc}", setting=SETTING
        ) from exc
    if tuned is not None and adapted_head is not None:
        columns = [config.labels.index(label) for label in config.adapter_labels]
        model: torch.nn.Module = LabelSplitRiskModel(
            PooledRiskModel(encoder, head, config.layers),
            PooledRiskModel(tuned, adapted_head, config.layers),
            columns,
        )
    else:
        model = PooledRiskModel(tuned if tuned is not None else encoder, head, config.layers)
    if dtype is not None:
        for module in (encoder, tuned):
            if module is not None:
                module.to(dtype)
    model = model.to(device).eval()
    return model, tokenizer, config, encoder


def _load_crisis(
    folder: Path, encoder: torch.nn.Module | None, tokenizer: Any, device: str
) -> tuple[CrisisHead, SentenceEncoder] | None:
    """The folder's crisis head with the encoder it reads: the pooled model's own frozen encoder when that is
    the head's base model, else the base model loaded once (a Hugging Face risk model shipping a crisis head)."""
    try:
        head = CrisisHead.load(folder)
    except CrisisHeadError as exc:
        raise ModelLoadError(str(exc), setting=SETTING) from exc
    if head is None:
        return None
    if encoder is None or head.config.base_model != read_pooled_config(folder, setting=SETTING).base_model:
        encoder, tokenizer = load_base_encoder(
            head.config.base_model, device=device, setting=SETTING, what="the crisis head"
        )
    frozen = encoder
    if head.config.adapter:
        encoder = _adapted_copy(encoder, folder / head.config.adapter)
    try:
        reader = SentenceEncoder(
            encoder, tokenizer, max_tokens=head.config.max_tokens, device=device, layers=head.config.layers
        )
        if head.partner is not None:
            head = head.reading_partner_with(
                _partner_reader(head.config.base_model, head.partner, frozen, tokenizer, device)
            )
    except CrisisHeadError as exc:
        raise ModelLoadError(str(exc), setting=SETTING) from exc
    return head, reader


def _partner_reader(
    base_model: str, partner: CrisisHead, frozen: torch.nn.Module, tokenizer: Any, device: str
) -> SentenceEncoder:
    """A blended head's partner reads the frozen base encoder the tuned head's adapter was applied to (no second
    copy of the weights is loaded)."""
    if partner.config.base_model != base_model:
        raise CrisisHeadError(
            f"a blended crisis head reads {base_model!r} but its partner reads "
            f"{partner.config.base_model!r}: both must read one base encoder"
        )
    return SentenceEncoder(
        frozen, tokenizer, max_tokens=partner.config.max_tokens, device=device, layers=partner.config.layers
    )


def _tuned_encoder(encoder: torch.nn.Module, folder: Path, config: PooledConfig) -> torch.nn.Module:
    """The encoder with the folder's LoRA adapter merged in; a copy when the plain one is still needed."""
    if config.adapter_labels:
        return _adapted_copy(encoder, folder / str(config.adapter))
    return _merge_adapter(encoder, folder / str(config.adapter))


def _load_head(path: Path, config: PooledConfig) -> torch.nn.Module:
    from safetensors.torch import load_file

    from inference.risk.heads import RiskHead

    head = RiskHead(config.in_features, len(config.labels), hidden=config.hidden)
    head.load_state_dict({key: value.float() for key, value in load_file(path).items()})
    return head
