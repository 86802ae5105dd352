"""Turn empathy rows into token ids, rationale token labels and padded batches, and run a model over them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from inference.empathy.data import EmpathyRow
from inference.empathy.model import BiEncoderConfig, EmpathyBiEncoder, encoder_states
from inference.empathy.text import IGNORE, Tokenized, rationale_char_spans, token_rationale_labels, tokenize

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodedRow:
    seeker_ids: list[int]
    response: Tokenized
    rationale_labels: list[int]
    level: int


def encode_rows(
    rows: Sequence[EmpathyRow], tokenizer, config: BiEncoderConfig, *, all_if_none: bool = True
) -> list[EncodedRow]:
    """Token ids of both posts and per-token rationale labels (IGNORE on special tokens)."""
    seekers = tokenize(
        tokenizer, [r.seeker_post for r in rows], max_length=config.max_length, lowercase=config.lowercase
    )
    responses = tokenize(
        tokenizer, [r.response_post for r in rows], max_length=config.max_length, lowercase=config.lowercase
    )
    encoded = []
    for row, seeker, response in zip(rows, seekers, responses, strict=True):
        spans = rationale_char_spans(row.response_post, row.rationales)
        labels = token_rationale_labels(response, spans, all_if_none=all_if_none)
        encoded.append(EncodedRow(seeker.input_ids, response, labels, row.level))
    return encoded


def pad(
    sequences: Sequence[Sequence[int]], pad_value: int, width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, mask) padded on the right to ``width`` (default: the longest)."""
    width = width or max(len(s) for s in sequences)
    values = torch.full((len(sequences), width), pad_value, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        values[i, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
        mask[i, : len(seq)] = 1
    return values, mask


def stack_states(
    states: Sequence[torch.Tensor], width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack per-text hidden states [len, hidden] into [batch, width, hidden] plus a mask."""
    width = width or max(s.shape[0] for s in states)
    out = states[0].new_zeros((len(states), width, states[0].shape[-1]))
    mask = torch.zeros((len(states), width), dtype=torch.long, device=out.device)
    for i, s in enumerate(states):
        n = min(width, s.shape[0])
        out[i, :n] = s[:n]
        mask[i, :n] = 1
    return out, mask


@torch.inference_mode()
def encode_texts(
    encoder: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    pad_id: int,
    *,
    device: torch.device,
    batch_size: int = 64,
    width: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[torch.Tensor]:
    """Hidden states of each sequence ([len, hidden] on CPU; [width, hidden] when ``width`` is fixed)."""
    encoder.eval()
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    out: list[torch.Tensor | None] = [None] * len(sequences)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        ids, mask = pad([sequences[i] for i in chunk], pad_id, width)
        states = encoder_states(encoder, ids.to(device), mask.to(device)).float().cpu()
        for row, index in enumerate(chunk):
            out[index] = states[row, : (width or len(sequences[index]))].clone()
        if progress:
            progress(len(chunk))
    return out  # type: ignore[return-value]


@dataclass
class Predictions:
    levels: list[int]
    probabilities: list[list[float]]
    # Per response: predicted and gold rationale labels of its non-special tokens.
    token_predicted: list[list[int]]
    token_gold: list[list[int]]


@torch.inference_mode()
def predict(
    model: EmpathyBiEncoder,
    encoded: Sequence[EncodedRow],
    pad_id: int,
    *,
    device: torch.device,
    batch_size: int = 64,
    seeker_states: Sequence[torch.Tensor] | None = None,
    responder_states: Sequence[torch.Tensor] | None = None,
) -> Predictions:
    """Run a bi-encoder over encoded rows; cached states (from :func:`encode_texts`) skip the encoders."""
    model.eval()
    levels: list[int] = []
    probabilities: list[list[float]] = []
    token_predicted: list[list[int]] = []
    token_gold: list[list[int]] = []
    full = not model.config.seeker_mask
    for start in range(0, len(encoded), batch_size):
        chunk = list(range(start, min(len(encoded), start + batch_size)))
        level_logits, rationale_logits = forward_batch(
            model,
            encoded,
            chunk,
            pad_id,
            device=device,
            seeker_states=seeker_states,
            responder_states=responder_states,
            full_seeker=full,
        )
        probs = torch.softmax(level_logits.float(), dim=-1).cpu()
        marks = rationale_logits.argmax(dim=-1).cpu()
        for row, index in enumerate(chunk):
            probabilities.append(probs[row].tolist())
            levels.append(int(probs[row].argmax()))
            labels = encoded[index].rationale_labels
            keep = [i for i, label in enumerate(labels) if label != IGNORE]
            token_predicted.append([int(marks[row, i]) for i in keep])
            token_gold.append([labels[i] for i in keep])
    return Predictions(levels, probabilities, token_predicted, token_gold)


def forward_batch(
    model: EmpathyBiEncoder,
    encoded: Sequence[EncodedRow],
    chunk: Sequence[int],
    pad_id: int,
    *,
    device: torch.device,
    seeker_states: Sequence[torch.Tensor] | None,
    responder_states: Sequence[torch.Tensor] | None = None,
    full_seeker: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    width = model.config.max_length if full_seeker else None
    if seeker_states is not None:
        states, seeker_mask = stack_states([seeker_states[i] for i in chunk], width)
        states, seeker_mask = states.to(device), seeker_mask.to(device)
    else:
        seeker_ids, seeker_mask = pad([encoded[i].seeker_ids for i in chunk], pad_id, width)
        seeker_ids, seeker_mask = seeker_ids.to(device), seeker_mask.to(device)
        states = model.encode_seeker(seeker_ids, seeker_mask)
    ids, mask = pad([encoded[i].response.input_ids for i in chunk], pad_id)
    cached = None
    if responder_states is not None:
        cached, _ = stack_states([responder_states[i] for i in chunk], ids.shape[1])
        cached = cached.to(device)
    return model.score(states, seeker_mask, ids.to(device), mask.to(device), responder_states=cached)


def rationale_targets(encoded: Sequence[EncodedRow], chunk: Sequence[int]) -> torch.Tensor:
    labels, _ = pad([encoded[i].rationale_labels for i in chunk], IGNORE)
    return labels
