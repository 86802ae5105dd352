"""Low-rank adapters for the responder encoder: train a few parameters, ship only them, merge them at load."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import torch
from torch import nn

log = logging.getLogger(__name__)

# The linear layers of a BERT/RoBERTa layer (query/key/value, attention output, feed-forward in and out).
DEFAULT_TARGETS = ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense")


class LoraLinear(nn.Module):
    """``base(x) + scale * B(A(dropout(x)))`` with the base layer frozen; B starts at zero (a no-op)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.base = base
        self.rank = rank
        self.scale = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, dtype=base.weight.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, dtype=base.weight.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout)
        for parameter in base.parameters():
            parameter.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (self.dropout(x) @ self.lora_A.t() @ self.lora_B.t()) * self.scale


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
    """Wrap the given Linear layers in LoRA; everything else in the encoder is frozen."""
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    wrapped = []
    for path in paths:
        parent, name = _parent(encoder, path)
        base = getattr(parent, name)
        if not isinstance(base, nn.Linear):
            raise ValueError(f"LoRA target {path!r} is not a Linear layer")
        setattr(parent, name, LoraLinear(base, rank, alpha, dropout))
        wrapped.append(path)
    return wrapped


def lora_state(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """``{path}.lora_A`` / ``{path}.lora_B`` for every adapter in the encoder."""
    state = {}
    for name, module in encoder.named_modules():
        if isinstance(module, LoraLinear):
            state[f"{name}.lora_A"] = module.lora_A.detach()
            state[f"{name}.lora_B"] = module.lora_B.detach()
    return state


def merge_lora(encoder: nn.Module) -> nn.Module:
    """Fold every adapter into its base layer (W += scale * B @ A) and drop the wrappers: plain Linears again."""
    for name, module in list(encoder.named_modules()):
        if isinstance(module, LoraLinear):
            base = module.base
            with torch.no_grad():
                delta = (module.lora_B.float() @ module.lora_A.float()) * module.scale
                base.weight += delta.to(base.weight.dtype)
            parent, attr = _parent(encoder, name)
            setattr(parent, attr, base)
    return encoder


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
