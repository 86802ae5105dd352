"""SetFit's contrastive recipe on a LoRA-adapted sentence encoder: pairs, tuning, and the adapter's files.

Shared by the risk side's crisis head (``inference/risk/crisis_train.py``, variant G) and the empathy chat
recogniser's IP head (``inference/empathy/recogniser_train.py``, attempt 3). Same-label sentences are pulled
together and others pushed apart (Tunstall et al., 2022); a logistic regression is then fitted on the tuned
embeddings by the caller. LoRA (peft) keeps the shipped artefact about 1 MB; ``save_adapter`` writes it and
``merge_adapter`` / ``adapted_copy`` read it back, so save and load live side by side.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

LORA_TARGETS = ("query", "key", "value", "dense")

Item = TypeVar("Item")


@dataclass(frozen=True)
class LoraShape:
    """Where and how large the LoRA adapter on the encoder is."""

    rank: int = 8
    alpha: float = 16
    dropout: float = 0.1
    blocks: tuple[int, ...] = (0, 1, 2, 3, 4, 5)


@dataclass(frozen=True)
class ContrastiveRecipe(LoraShape):
    """SetFit (Tunstall et al., 2022): cosine similarity of pairs regressed on 1 (same label) / 0 (not), one pass."""

    lr: float = 2e-4
    batch_pairs: int = 16
    same_partners: int = 2
    other_partners: int = 2
    max_tokens: int = 64


def lora_copy(base_encoder: Any, shape: LoraShape) -> Any:
    """A peft LoRA model over a copy of ``base_encoder`` (the original stays frozen and untouched)."""
    from peft import LoraConfig, get_peft_model

    return get_peft_model(
        copy.deepcopy(base_encoder),
        LoraConfig(
            r=shape.rank,
            lora_alpha=shape.alpha,
            lora_dropout=shape.dropout,
            target_modules=list(LORA_TARGETS),
            layers_to_transform=list(shape.blocks),
        ),
    )


def label_pairs(
    items: Sequence[Item],
    label_of: Callable[[Item], int],
    text_of: Callable[[Item], str],
    rng: random.Random,
    recipe: ContrastiveRecipe,
) -> list[tuple[str, str, float]]:
    """(text a, text b, 1.0 same label / 0.0 not): every item with ``same_partners`` rows of its own label and
    ``other_partners`` of the other, shuffled. ``text_of`` may restyle (it is called once per text, in order)."""
    by_label = {label: [item for item in items if label_of(item) == label] for label in (0, 1)}
    pairs = []
    for item in items:
        label = label_of(item)
        for _ in range(recipe.same_partners):
            pairs.append((text_of(item), text_of(rng.choice(by_label[label])), 1.0))
        for _ in range(recipe.other_partners):
            pairs.append((text_of(item), text_of(rng.choice(by_label[1 - label])), 0.0))
    rng.shuffle(pairs)
    return pairs


def tune_contrastive(
    base_encoder: Any,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str, float]],
    seed: int,
    recipe: ContrastiveRecipe,
) -> Any:
    """One pass of the cosine-similarity MSE loss over ``pairs`` on a LoRA copy; returns the peft model (eval)."""
    import torch

    torch.manual_seed(seed)
    encoder = lora_copy(base_encoder, recipe)
    params = [p for p in encoder.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.01)
    encoder.train()
    total = 0.0
    for start in range(0, len(pairs), recipe.batch_pairs):
        batch = pairs[start : start + recipe.batch_pairs]
        encoded = tokenizer(
            [a for a, _, _ in batch] + [b for _, b, _ in batch],
            padding=True,
            truncation=True,
            max_length=recipe.max_tokens,
            return_tensors="pt",
        )
        states = encoder(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).float()
        pooled = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)
        first, second = pooled[: len(batch)], pooled[len(batch) :]
        target = torch.tensor([same for _, _, same in batch])
        loss = torch.nn.functional.mse_loss((first * second).sum(-1), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        total += float(loss.detach()) * len(batch)
    log.info("contrastive tuning: %d pairs, mean loss %.4f", len(pairs), total / max(len(pairs), 1))
    encoder.eval()
    return encoder


# -- the adapter's files -------------------------------------------------------------------------------


def save_adapter(peft_model: Any, folder: Path, base_model: str) -> None:
    """Save a LoRA adapter as shipped: no template card, the base named as the user gave it."""
    peft_model.save_pretrained(folder)
    # peft writes a template model card full of "[More Information Needed]": the model folder's own
    # README.md is the model card.
    (folder / "README.md").unlink(missing_ok=True)
    # Name the base as the user gave it, not this machine's path to it.
    adapter_config = folder / "adapter_config.json"
    config_data = json.loads(adapter_config.read_text(encoding="utf-8"))
    config_data["base_model_name_or_path"] = base_model
    adapter_config.write_text(json.dumps(config_data, indent=2) + "\n", encoding="utf-8")


def merge_adapter(start: Any, adapter: Path) -> Any:
    """``start`` with the LoRA adapter in the folder ``adapter`` merged into its weights."""
    from peft import PeftModel

    with warnings.catch_warnings():
        # peft reads a property transformers has deprecated; harmless, and noise in `peercare score`.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return PeftModel.from_pretrained(start, adapter).merge_and_unload()


def adapted_copy(encoder: Any, adapter: Path) -> Any:
    """A copy of ``encoder`` with the LoRA adapter in ``adapter`` merged in (the original stays as it is)."""
    return merge_adapter(copy.deepcopy(encoder), adapter)
