"""The ER/IP/EX bi-encoder of Sharma et al. (EMNLP 2020) in native PyTorch, over any Hugging Face encoder."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

LEVELS = 3
RATIONALE_LABELS = 2
# The parameters a bi-encoder adds on top of its encoders (what PeerCare's files store besides adapters).
HEAD_PREFIXES = ("attn.", "norm.", "empathy_classifier.", "rationale_classifier.")


@dataclass
class BiEncoderConfig:
    """Plain settings of one bi-encoder; stored as ``config.json`` in PeerCare's own format."""

    mechanism: str
    hidden_size: int
    max_length: int = 64
    # PeerCare's models mask the seeker's padding in the cross-attention, so dynamic padding is exact.
    # Upstream checkpoints were trained without it: their seekers must be padded to exactly max_length.
    seeker_mask: bool = True
    # Upstream trained with transformers 2.x, whose RoBERTa tokenizer really lowercased; modern ones do not.
    lowercase: bool = False
    attn_heads: int = 1
    hidden_dropout: float = 0.2
    attn_dropout: float = 0.1
    classifier_dropout: float = 0.1
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BiEncoderConfig:
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


class Norm(nn.Module):
    """Upstream's layer norm: its weights are in every checkpoint but upstream's forward never uses it."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(size))
        self.bias = nn.Parameter(torch.zeros(size))


class CrossAttention(nn.Module):
    """Responder tokens attend to seeker tokens (upstream's MultiHeadAttention, same parameter names)."""

    def __init__(self, hidden_size: int, heads: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        if hidden_size % heads:
            raise ValueError(f"hidden size {hidden_size} is not divisible by {heads} heads")
        self.heads = heads
        self.head_dim = hidden_size // heads
        self.q_linear = nn.Linear(hidden_size, hidden_size)
        self.k_linear = nn.Linear(hidden_size, hidden_size)
        self.v_linear = nn.Linear(hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        batch = query.size(0)

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, -1, self.heads, self.head_dim).transpose(1, 2)

        q = split(self.q_linear(query))
        k = split(self.k_linear(keys))
        v = split(self.v_linear(keys))
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        if key_mask is not None:
            scores = scores.masked_fill(key_mask[:, None, None, :] == 0, torch.finfo(scores.dtype).min)
        weights = self.dropout(torch.softmax(scores, dim=-1))
        mixed = (
            torch.matmul(weights, v).transpose(1, 2).contiguous().view(batch, -1, self.heads * self.head_dim)
        )
        return self.out(mixed)


class LevelHead(nn.Module):
    """dense -> ReLU -> dropout -> out_proj on the first token (upstream uses ReLU, not tanh)."""

    def __init__(self, hidden_size: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_size, LEVELS)

    def forward(self, first_token: torch.Tensor) -> torch.Tensor:
        x = self.dropout(first_token)
        x = torch.relu(self.dense(x))
        return self.out_proj(self.dropout(x))


class EmpathyBiEncoder(nn.Module):
    """Seeker encoder (frozen pretrained encoder) + responder encoder + cross-attention + two heads.

    Parameter names match upstream's checkpoints (seeker_encoder, responder_encoder, attn, norm,
    empathy_classifier, rationale_classifier), minus upstream's ``.roberta`` wrapper on the encoders.
    ``seeker_encoder`` may be None when a scorer keeps one shared seeker encoder for all three mechanisms.
    """

    def __init__(
        self, config: BiEncoderConfig, seeker_encoder: nn.Module | None, responder_encoder: nn.Module
    ) -> None:
        super().__init__()
        self.config = config
        self.seeker_encoder = seeker_encoder
        self.responder_encoder = responder_encoder
        hidden = config.hidden_size
        self.attn = CrossAttention(hidden, config.attn_heads, config.attn_dropout)
        self.norm = Norm(hidden)
        self.empathy_classifier = LevelHead(hidden, config.classifier_dropout)
        self.rationale_classifier = nn.Linear(hidden, RATIONALE_LABELS)
        self.dropout = nn.Dropout(config.hidden_dropout)
        for module in (self.attn, self.empathy_classifier, self.rationale_classifier):
            module.apply(_init_linear)

    def encode_seeker(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.seeker_encoder is None:
            raise RuntimeError("this bi-encoder's seeker encoder is held by its scorer")
        return encoder_states(self.seeker_encoder, input_ids, attention_mask)

    def score(
        self,
        seeker_states: torch.Tensor,
        seeker_mask: torch.Tensor | None,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        responder_states: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(level logits [batch, 3], rationale logits [batch, tokens, 2]) for responses against seekers.

        ``seeker_mask`` is used only when the model was trained with one (``config.seeker_mask``).
        ``responder_states`` lets training with a frozen responder reuse cached encoder outputs.
        """
        if responder_states is None:
            responder_states = encoder_states(self.responder_encoder, input_ids, attention_mask)
        mask = seeker_mask if self.config.seeker_mask else None
        mixed = responder_states + self.dropout(self.attn(responder_states, seeker_states, mask))
        level_logits = self.empathy_classifier(mixed[:, 0, :])
        rationale_logits = self.rationale_classifier(self.dropout(mixed))
        return level_logits, rationale_logits


def encoder_states(encoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Last hidden states of a Hugging Face encoder (token type ids default to zeros, as upstream)."""
    return encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _init_linear(module: nn.Module) -> None:
    # Upstream's _init_weights: normal(0, 0.02) weights, zero biases.
    if isinstance(module, nn.Linear):
        module.weight.data.normal_(mean=0.0, std=0.02)
        if module.bias is not None:
            module.bias.data.zero_()


def level_and_rationale_loss(
    level_logits: torch.Tensor,
    rationale_logits: torch.Tensor,
    levels: torch.Tensor,
    rationale_labels: torch.Tensor,
    *,
    lambda_ei: float = 1.0,
    lambda_re: float = 0.5,
    class_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Upstream's loss: lambda_EI * CE(level) + lambda_RE * CE(rationale tokens); label -100 is ignored."""
    level_loss = nn.functional.cross_entropy(level_logits.float(), levels, weight=class_weights)
    flat = rationale_labels.reshape(-1)
    if bool((flat != -100).any()):
        rationale_loss = nn.functional.cross_entropy(
            rationale_logits.float().reshape(-1, RATIONALE_LABELS), flat, ignore_index=-100
        )
    else:
        rationale_loss = level_loss.new_zeros(())
    return lambda_ei * level_loss + lambda_re * rationale_loss, level_loss, rationale_loss
