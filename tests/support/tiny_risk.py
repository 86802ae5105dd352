"""Tiny random risk classifiers saved with save_pretrained, for tests that need a real model quickly.

``build_tiny_risk_model`` writes a Hugging Face ``BertForSequenceClassification`` folder (hidden size 32,
2 layers, a small word-piece vocabulary) in either problem type, with ``id2label`` like the published
mental-health classifiers (neutral/depression/anxiety/stress) or PeerCare's own labels. ``forced`` pins the
output probabilities whatever the text (zero weights, chosen biases): ``low_risk=True`` makes every risk
label about 0.01, so only the crisis-phrase layer can raise a tier — handy for the bot's end-to-end tests.
``build_tiny_pooled_risk_model`` writes PeerCare's compact format (frozen tiny encoder + trained-head file).
"""

from __future__ import annotations

import logging
import math
import string
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from inference.types import RiskThresholds

log = logging.getLogger(__name__)

PUBLISHED_LABELS: tuple[str, ...] = ("neutral", "depression", "anxiety", "stress")
PEERCARE_LABELS: tuple[str, ...] = ("suicidal", "depression", "stress")
MULTI_LABEL = "multi_label_classification"
SINGLE_LABEL = "single_label_classification"
LOW_RISK_PROBABILITY = 0.01

_WORDS = [
    "i",
    "want",
    "to",
    "die",
    "kill",
    "myself",
    "end",
    "it",
    "all",
    "my",
    "life",
    "no",
    "one",
    "would",
    "miss",
    "me",
    "help",
    "please",
    "hotline",
    "call",
    "talk",
    "you",
    "are",
    "not",
    "alone",
    "exam",
    "is",
    "killing",
    "me",
    "stressed",
    "tired",
    "sad",
    "happy",
    "today",
    "work",
    "school",
    "friend",
    "the",
    "a",
    "and",
    "of",
]


def write_tiny_tokenizer(folder: Path):
    """A BERT word-piece tokenizer that can spell any ASCII text (letters, digits and punctuation pieces).

    Built with the tokenizers library: ``BertTokenizer(vocab_file=...)`` ignores its file under transformers 5
    and gave a 5-token tokenizer that read every word as [UNK].
    """
    from inference.empathy.tokenizer_files import wordpiece_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    pieces = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(_WORDS), *pieces]
    vocab += [f"##{piece}" for piece in string.ascii_lowercase + string.digits]
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    tokenizer = wordpiece_tokenizer(vocab_file, lowercase=True)
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(folder)
    return tokenizer


def _tiny_config(labels: Sequence[str], problem_type: str | None, max_positions: int, vocab_size: int):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: index for index, label in enumerate(labels)},
        problem_type=problem_type,
    )


def forced_biases(
    labels: Sequence[str], forced: Mapping[str, float], problem_type: str | None
) -> torch.Tensor:
    """Classifier biases that make the model output ``forced`` probabilities (others: 0.01 / the rest)."""
    if problem_type == SINGLE_LABEL:
        rest = [label for label in labels if label not in forced]
        leftover = max(1e-6, 1.0 - sum(forced.values()))
        probs = [forced.get(label, leftover / max(1, len(rest))) for label in labels]
        return torch.tensor([math.log(max(p, 1e-6)) for p in probs])
    probs = [min(max(forced.get(label, LOW_RISK_PROBABILITY), 1e-6), 1 - 1e-6) for label in labels]
    return torch.tensor([math.log(p / (1 - p)) for p in probs])


def low_risk_probabilities(labels: Sequence[str]) -> dict[str, float]:
    """Every risk label at 0.01; a neutral label (if any) takes the rest."""
    from inference.risk.model_folder import is_neutral_label

    return {label: LOW_RISK_PROBABILITY for label in labels if not is_neutral_label(label)}


def write_calibration(
    folder: Path, thresholds: RiskThresholds, temperature: Mapping[str, float] | None = None
):
    from inference.risk.model_folder import CALIBRATION_FILE, Calibration, write_json

    calibration = Calibration(dict(temperature or {}), thresholds, method="set by a test")
    write_json(folder / CALIBRATION_FILE, calibration.to_json())


def build_tiny_risk_model(
    folder: str | Path,
    *,
    labels: Sequence[str] = PEERCARE_LABELS,
    problem_type: str | None = MULTI_LABEL,
    forced: Mapping[str, float] | None = None,
    low_risk: bool = False,
    thresholds: RiskThresholds | None = None,
    max_position_embeddings: int = 512,
    seed: int = 0,
) -> Path:
    """Save a tiny random sequence classifier (and tokenizer) to ``folder`` and return the folder.

    ``problem_type=None`` leaves it out of the config (as some published checkpoints do).
    ``forced`` / ``low_risk`` pin the outputs; ``thresholds`` writes a calibration file next to it.
    """
    from transformers import BertForSequenceClassification

    folder = Path(folder)
    tokenizer = write_tiny_tokenizer(folder)
    torch.manual_seed(seed)
    config = _tiny_config(labels, problem_type, max_position_embeddings, len(tokenizer))
    model = BertForSequenceClassification(config).eval()
    if low_risk:
        forced = {**low_risk_probabilities(labels), **(forced or {})}
    if forced:
        unknown = set(forced) - set(labels)
        if unknown:
            raise ValueError(f"forced labels not in the model: {sorted(unknown)}")
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(forced_biases(labels, forced, problem_type))
    model.save_pretrained(folder)
    if thresholds is not None:
        write_calibration(folder, thresholds)
    return folder


def build_tiny_pooled_risk_model(
    folder: str | Path,
    *,
    labels: Sequence[str] = PEERCARE_LABELS,
    forced: Mapping[str, float] | None = None,
    window_tokens: int = 32,
    overlap_tokens: int = 8,
    thresholds: RiskThresholds | None = None,
    lora: bool = False,
    adapter_labels: Sequence[str] = (),
    seed: int = 0,
) -> Path:
    """PeerCare's compact format over a tiny random base encoder saved in ``folder/base``.

    ``lora=True`` also saves a (non-zero) LoRA adapter in ``folder/adapter``, as ``--mode lora`` training does.
    ``adapter_labels`` (with ``lora``): the adapter and a second random head answer only those labels, as
    ``--adapter-labels`` training saves them; the main head (the same as without ``lora``) answers the rest.
    """
    from safetensors.torch import save_file
    from transformers import BertModel

    from inference.risk.heads import RiskHead
    from inference.risk.model_folder import (
        ADAPTED_HEAD_FILE,
        POOLED_CONFIG_FILE,
        POOLED_HEAD_FILE,
        PooledConfig,
        write_json,
    )

    folder = Path(folder)
    base = folder / "base"
    tokenizer = write_tiny_tokenizer(base)
    torch.manual_seed(seed)
    encoder = BertModel(_tiny_config(labels, None, 512, len(tokenizer)))
    encoder.save_pretrained(base)
    # The main head is drawn before the adapter, so with or without ``lora`` it is the same head.
    layers = (1, 2)
    head = RiskHead(32 * len(layers), len(labels))
    if forced:
        with torch.no_grad():
            head.layers[-1].weight.zero_()
            head.layers[-1].bias.copy_(forced_biases(labels, forced, MULTI_LABEL))
    adapter = None
    if lora:
        from peft import LoraConfig, get_peft_model

        tuned = get_peft_model(encoder, LoraConfig(r=2, lora_alpha=4, target_modules=["query", "value"]))
        with torch.no_grad():
            for name, parameter in tuned.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 0.5)  # a trained adapter is not the identity
        adapter = "adapter"
        tuned.save_pretrained(folder / adapter)
    save_file(
        {key: value.half().contiguous() for key, value in head.state_dict().items()},
        folder / POOLED_HEAD_FILE,
    )
    if adapter_labels:
        adapted = RiskHead(32 * len(layers), len(labels))
        save_file(
            {key: value.half().contiguous() for key, value in adapted.state_dict().items()},
            folder / ADAPTED_HEAD_FILE,
        )
    config = PooledConfig(
        base_model=str(base.resolve()),
        labels=tuple(labels),
        problem_type=MULTI_LABEL,
        layers=layers,
        in_features=32 * len(layers),
        window_tokens=window_tokens,
        overlap_tokens=overlap_tokens,
        adapter=adapter,
        adapter_labels=tuple(adapter_labels),
        adapted_head=ADAPTED_HEAD_FILE if adapter_labels else None,
    )
    write_json(folder / POOLED_CONFIG_FILE, config.to_json())
    if thresholds is not None:
        write_calibration(folder, thresholds)
    return folder


def add_tiny_crisis_head(
    folder: str | Path,
    *,
    forced: float | None = None,
    adapter: bool = False,
    chunk_window: int = 2,
    base_model: str | None = None,
    seed: int = 0,
) -> Path:
    """Add a crisis head to a tiny risk model folder (pooled: over its own base encoder).

    ``forced`` pins P(crisis) whatever the text (zero weights, a chosen bias); otherwise the weights are random.
    ``adapter=True`` also saves a non-identity LoRA adapter for the head's encoder, as tuned training does.
    """
    import numpy as np
    from transformers import BertModel

    from inference.risk.crisis import CrisisHead, CrisisHeadConfig

    folder = Path(folder)
    base = base_model or str((folder / "base").resolve())
    generator = np.random.default_rng(seed)
    if forced is None:
        tensors = {"weight": generator.normal(0, 3, 32).astype(np.float32), "bias": np.zeros(1, np.float32)}
    else:
        tensors = {
            "weight": np.zeros(32, np.float32),
            "bias": np.array([math.log(forced / (1 - forced))], np.float32),
        }
    adapter_folder = None
    if adapter:
        from peft import LoraConfig, get_peft_model

        tuned = get_peft_model(
            BertModel.from_pretrained(base), LoraConfig(r=2, lora_alpha=4, target_modules=["query"])
        )
        torch.manual_seed(seed)
        with torch.no_grad():
            for name, parameter in tuned.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 0.5)
        adapter_folder = "crisis_adapter"
        tuned.save_pretrained(folder / adapter_folder)
    config = CrisisHeadConfig(base_model=base, chunk_window=chunk_window, adapter=adapter_folder)
    CrisisHead(config, tensors).save(folder)
    return folder


def write_tiny_esconv(data_dir: Path, seeker_turns: str, pairs: str | None = None) -> Path:
    """A shared-data folder holding an ``esconv-dev`` with the given CSV texts (``seeker_turns.csv``: conversation,
    turn, text; ``pairs.csv``: conversation, turn, seeker, reply, strategy); returns ``data_dir``."""
    esconv = data_dir / "esconv-dev"
    esconv.mkdir(parents=True)
    (esconv / "seeker_turns.csv").write_text(seeker_turns, encoding="utf-8")
    if pairs is not None:
        (esconv / "pairs.csv").write_text(pairs, encoding="utf-8")
    return data_dir
