"""Low-rank adapters for the responder encoder (``peft``): train a few parameters, ship only them, merge them at load."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import torch
from torch import nn

log = logging.getLogger(__name__)

# The linear layers of a BERT/RoBERTa layer (query/key/value, attention output, feed-forward in and out).
DEFAULT_TARGETS = ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense")
# peft's name for the one adapter ``add_lora`` injects.
_ADAPTER = "default"


def lora_target_paths(encoder: nn.Module, targets: Iterable[str] = DEFAULT_TARGETS) -> list[str]:
    """Dotted paths of the encoder's Linear layers whose path ends with one of ``targets``."""
    suffixes = tuple(targets)
    return [
        name
        for name, module in encoder.named_modules()
        if isinstance(module, nn.Linear)
        and name
        and any(name == s or name.endswith("." + s) for s in suffixes)
    ]


def add_lora(
    encoder: nn.Module, paths: Iterable[str], *, rank: int, alpha: float, dropout: float = 0.0
) -> list[str]:
    """Give the listed Linear layers a ``peft`` LoRA adapter in place; everything else in the encoder is frozen.

    ``peft`` computes ``base(x) + alpha / rank * B(A(dropout(x)))`` with A Kaiming-initialised and B zero (a no-op
    at first), the recipe the shipped adapters were trained with, so they load as before."""
    from peft import LoraConfig, inject_adapter_in_model

    wrapped = list(paths)
    for path in wrapped:
        parent, name = _parent(encoder, path)
        if not isinstance(getattr(parent, name), nn.Linear):
            raise ValueError(f"LoRA target {path!r} is not a Linear layer")
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=wrapped)
    inject_adapter_in_model(config, encoder)
    return wrapped


def _adapted_layers(encoder: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(path, layer) of every Linear that carries a ``peft`` LoRA adapter."""
    from peft.tuners.lora import LoraLayer

    for name, module in encoder.named_modules():
        if isinstance(module, LoraLayer):
            yield name, module


def lora_state(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """``{path}.lora_A`` / ``{path}.lora_B`` for every adapter in the encoder: the checkpoint format
    (``apply_saved_lora`` merges it at load), which names layers as the plain encoder does."""
    state = {}
    for name, layer in _adapted_layers(encoder):
        state[f"{name}.lora_A"] = layer.lora_A[_ADAPTER].weight.detach()
        state[f"{name}.lora_B"] = layer.lora_B[_ADAPTER].weight.detach()
    return state


def lora_scale(encoder: nn.Module) -> float:
    """alpha / rank of the encoder's adapters (one value: ``add_lora`` gives every layer the same)."""
    return float(next(layer.scaling[_ADAPTER] for _, layer in _adapted_layers(encoder)))


def apply_saved_lora(
    encoder: nn.Module, tensors: dict[str, torch.Tensor], *, alpha: float, setting_hint: str = ""
) -> int:
    """Merge adapters saved by :func:`lora_state` into a plain encoder; returns how many layers changed."""
    paths = sorted({key.rsplit(".", 1)[0] for key in tensors})
    for path in paths:
        try:
            a = tensors[f"{path}.lora_A"].float()
            b = tensors[f"{path}.lora_B"].float()
        except KeyError as exc:
            raise ValueError(f"adapter {path!r} lacks {exc.args[0]!r}{setting_hint}") from exc
        parent, name = _parent(encoder, path)
        base = getattr(parent, name)
        if not isinstance(base, nn.Linear) or tuple(base.weight.shape) != (b.shape[0], a.shape[1]):
            raise ValueError(f"adapter {path!r} does not fit the base encoder{setting_hint}")
        with torch.no_grad():
            delta = (b @ a) * (alpha / a.shape[0])
            base.weight += delta.to(device=base.weight.device, dtype=base.weight.dtype)
    return len(paths)


def _parent(root: nn.Module, path: str) -> tuple[nn.Module, str]:
    *parents, name = path.split(".")
    module = root
    for part in parents:
        module = getattr(module, part)
    return module, name
