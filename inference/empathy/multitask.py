"""One bi-encoder for ER, IP and EX: a shared responder encoder (one pass per reply) and a head set per mechanism.

Why: three single-mechanism bi-encoders run the reply through three responder encoders. Here one responder
encoder (the base encoder plus one ``peft`` LoRA adapter) feeds three per-mechanism cross-attention, level and
rationale heads, trained jointly (``multitask_training.py``). Each mechanism's view is an ordinary
:class:`EmpathyBiEncoder` that shares the responder module, so the scorer and the loaders treat it like any
other model, and the scorer runs a shared responder once (``EmpathyScorer.score``).

Files (format ``peercare-empathy-multitask``): ``config.json`` (the base encoder and each mechanism's
``BiEncoderConfig``), ``heads.safetensors`` (fp16, ``ER.attn.q_linear.weight`` ...), ``responder_adapter/``
(peft's own adapter files) and ``training_sp_ids.json``. Nothing is pickled; no remote code runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from inference.empathy.model import HEAD_PREFIXES, BiEncoderConfig, EmpathyBiEncoder

FORMAT_NAME = "peercare-empathy-multitask"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
HEADS_FILE = "heads.safetensors"
ADAPTER_FOLDER = "responder_adapter"


class MultiTaskBiEncoder(nn.Module):
    """The seeker encoder, one responder encoder and, per mechanism, a bi-encoder view that shares both."""

    def __init__(
        self, configs: Mapping[str, BiEncoderConfig], seeker_encoder: nn.Module | None, responder: nn.Module
    ) -> None:
        super().__init__()
        self.seeker_encoder = seeker_encoder
        self.responder_encoder = responder
        self.heads = nn.ModuleDict(
            {
                mechanism: EmpathyBiEncoder(config, seeker_encoder, responder)
                for mechanism, config in configs.items()
            }
        )

    def view(self, mechanism: str) -> EmpathyBiEncoder:
        """The mechanism's bi-encoder, sharing this model's encoders."""
        view = self.heads[mechanism]
        if not isinstance(view, EmpathyBiEncoder):
            raise TypeError(f"{mechanism} head is not a bi-encoder")
        return view

    def score_all(
        self, seeker: tuple[torch.Tensor, torch.Tensor | None], replies: tuple[torch.Tensor, torch.Tensor]
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Each mechanism's (level logits, rationale logits) from one responder pass: ``seeker`` is (states,
        mask) and ``replies`` (the responder encoder's states, mask), computed once by the caller."""
        states, mask = replies
        unused_ids = torch.zeros_like(mask)  # the responder's states are given, so its input ids are not read
        return {
            mechanism: view.score(seeker[0], seeker[1], unused_ids, mask, states)
            for mechanism, view in self.heads.items()
        }

    def head_tensors(self) -> dict[str, torch.Tensor]:
        """Every mechanism's head weights (not the shared encoders), keyed ``MECHANISM.name``."""
        return {
            f"{mechanism}.{name}": value
            for mechanism, view in self.heads.items()
            for name, value in view.state_dict().items()
            if name.startswith(HEAD_PREFIXES)
        }


def save_multitask(
    model: MultiTaskBiEncoder,
    peft_responder: Any,
    folder: Path,
    *,
    base_encoder: str,
    training_sp_ids: set[str],
) -> Path:
    """Write the heads (fp16), the responder's peft adapter and the config; the base encoder is not copied."""
    from inference.contrastive import save_adapter
    from inference.empathy.checkpoints import TRAINING_IDS_FILE

    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {
            name: value.detach().to(torch.float16).contiguous().cpu()
            for name, value in model.head_tensors().items()
        },
        str(folder / HEADS_FILE),
    )
    save_adapter(peft_responder, folder / ADAPTER_FOLDER, base_encoder)
    config = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "base_encoder": base_encoder,
        "responder_adapter": ADAPTER_FOLDER,
        "mechanisms": {mechanism: view.config.to_dict() for mechanism, view in model.heads.items()},
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (folder / TRAINING_IDS_FILE).write_text(json.dumps({"sp_ids": sorted(training_sp_ids)}) + "\n")
    return folder


def load_multitask(path: Path, *, seeker: nn.Module, setting: str | None = None) -> MultiTaskBiEncoder:
    """The folder's model over ``seeker`` (the base encoder, frozen): the adapter merged into a copy of it."""
    from inference.contrastive import adapted_copy
    from inference.errors import ModelLoadError

    config = json.loads((path / CONFIG_FILE).read_text())
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise ModelLoadError(
            f"{path} was written by a newer PeerCare (format {config['format_version']})", setting=setting
        )
    configs = {m: BiEncoderConfig.from_dict(c) for m, c in config["mechanisms"].items()}
    for mechanism, mechanism_config in configs.items():
        if mechanism_config.mechanism != mechanism:
            raise ModelLoadError(
                f"{path}: the {mechanism} head says it is {mechanism_config.mechanism}", setting=setting
            )
    adapter = path / config.get("responder_adapter", ADAPTER_FOLDER)
    responder = adapted_copy(seeker, adapter).eval()
    model = MultiTaskBiEncoder(configs, seeker, responder)
    tensors = {name: value.float() for name, value in load_file(path / HEADS_FILE).items()}
    for mechanism, view in model.heads.items():
        own = {
            name[len(mechanism) + 1 :]: value
            for name, value in tensors.items()
            if name.startswith(f"{mechanism}.")
        }
        expected = {name for name in view.state_dict() if name.startswith(HEAD_PREFIXES)}
        missing = sorted(expected - set(own))
        if missing:
            raise ModelLoadError(
                f"{path / HEADS_FILE} lacks {mechanism}'s {', '.join(missing[:3])}", setting=setting
            )
        view.load_state_dict(own, strict=False)
    return model.eval()
