"""PeerCare's small risk model: a trained head over mean-pooled hidden states of a frozen sentence encoder."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

log = logging.getLogger(__name__)


def mean_pooled_layers(
    hidden_states: Sequence[torch.Tensor], attention_mask: torch.Tensor, layers: Sequence[int]
) -> torch.Tensor:
    """Mean of each chosen layer's token vectors over the real (unpadded) tokens, concatenated."""
    mask = attention_mask.unsqueeze(-1).to(hidden_states[0].dtype)
    count = mask.sum(dim=1).clamp(min=1.0)
    return torch.cat([(hidden_states[layer] * mask).sum(dim=1) / count for layer in layers], dim=-1)


class RiskHead(nn.Module):
    """Standardise the pooled features, then a linear layer (or a one-hidden-layer MLP) to one logit per label."""

    def __init__(self, in_features: int, n_labels: int, *, hidden: int = 0, dropout: float = 0.1) -> None:
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(in_features))
        self.register_buffer("feature_scale", torch.ones(in_features))
        if hidden:
            self.layers = nn.Sequential(
                nn.Dropout(dropout),
                nn.Linear(in_features, hidden),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, n_labels),
            )
        else:
            self.layers = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, n_labels))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers((features - self.feature_mean) / self.feature_scale)


class PooledRiskModel(nn.Module):
    """Encoder + RiskHead behaving like a sequence classifier: ``forward(input_ids, attention_mask) -> logits``."""

    def __init__(self, encoder: nn.Module, head: RiskHead, layers: Sequence[int]) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.layers = tuple(layers)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        output = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return mean_pooled_layers(output.hidden_states, attention_mask, self.layers)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        features = self.features(input_ids, attention_mask)
        return self.head(features.to(self.head.feature_mean.dtype))


class LabelSplitRiskModel(nn.Module):
    """Two pooled models behind one ``forward``: ``adapted`` answers ``adapted_columns``, ``base`` the rest.

    Why: a LoRA-tuned encoder scored better on dev for the Dreaddit labels (stress, depression), while
    tuning the suicidal label — which alone decides the high tier — made short chat messages noisier. So the
    suicidal logit keeps coming from the frozen encoder; the cost is a second encoder pass per window.
    """

    def __init__(
        self, base: PooledRiskModel, adapted: PooledRiskModel, adapted_columns: Sequence[int]
    ) -> None:
        super().__init__()
        self.base = base
        self.adapted = adapted
        self.adapted_columns = tuple(adapted_columns)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = self.base(input_ids, attention_mask).clone()
        columns = list(self.adapted_columns)
        logits[:, columns] = self.adapted(input_ids, attention_mask)[:, columns].to(logits.dtype)
        return logits
