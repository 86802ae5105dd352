"""Compute (once) and cache the frozen encoder's pooled window features that the risk heads train on."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from inference.risk.encoding import padded_batches, plan_windows
from inference.risk.heads import mean_pooled_layers

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path("runs/risk/feature-cache")


def load_encoder(source: str | Path):
    """The frozen base encoder and its tokenizer (never remote code)."""
    from transformers import AutoModel, AutoTokenizer

    from inference.sources import resolve_source

    folder = resolve_source(source, setting="--base-model")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder = AutoModel.from_pretrained(folder).eval()
    return encoder, tokenizer


@torch.inference_mode()
def window_features(
    encoder,
    tokenizer,
    texts: Sequence[str],
    *,
    window_tokens: int,
    overlap_tokens: int,
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean-pooled hidden states of EVERY layer for every window: ``(features[w, layers*dim], owner[w])``."""
    plan = plan_windows(tokenizer, texts, window_tokens=window_tokens, overlap_tokens=overlap_tokens)
    n_states = encoder.config.num_hidden_layers + 1
    dim = encoder.config.hidden_size
    out = np.zeros((len(plan.input_ids), n_states * dim), dtype=np.float16)
    started = time.perf_counter()
    done = 0
    pad_id = tokenizer.pad_token_id or 0
    for chunk, ids, mask in padded_batches(plan.input_ids, pad_id=pad_id, batch_size=batch_size):
        hidden = encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        pooled = mean_pooled_layers(hidden, mask, range(n_states))
        out[chunk] = pooled.float().numpy().astype(np.float16)
        done += len(chunk)
        if done // batch_size % 20 == 0:
            log.info(
                "encoded %d/%d windows (%.0fs)", done, len(plan.input_ids), time.perf_counter() - started
            )
    return out, np.asarray(plan.owners, dtype=np.int64)


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def cached_window_features(
    encoder,
    tokenizer,
    texts: Sequence[str],
    *,
    window_tokens: int,
    overlap_tokens: int,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    name: str = "features",
) -> tuple[np.ndarray, np.ndarray]:
    """``window_features`` with a per-text cache: only texts not seen before are encoded.

    The cache file is keyed by the encoder and the window settings; inside, windows are stored per text hash.
    """
    setting = hashlib.sha256(f"{encoder.config._name_or_path}|{window_tokens}|{overlap_tokens}".encode())
    path = Path(cache_dir) / f"{name}-{setting.hexdigest()[:16]}.npz"
    known: dict[str, np.ndarray] = {}
    if path.is_file():
        cached = np.load(path)
        features, owners, keys = cached["features"], cached["owners"], cached["keys"]
        for index, key in enumerate(keys):
            known[str(key)] = features[owners == index]
    wanted = [_text_key(text) for text in texts]
    missing = sorted({key: text for key, text in zip(wanted, texts, strict=True) if key not in known}.items())
    if missing:
        log.info("encoding %d texts not in the feature cache", len(missing))
        features, owners = window_features(
            encoder,
            tokenizer,
            [text for _, text in missing],
            window_tokens=window_tokens,
            overlap_tokens=overlap_tokens,
        )
        for index, (key, _) in enumerate(missing):
            known[key] = features[owners == index]
        keys = sorted(known)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            path,
            features=np.concatenate([known[key] for key in keys]),
            owners=np.concatenate(
                [np.full(len(known[key]), i, dtype=np.int64) for i, key in enumerate(keys)]
            ),
            keys=np.asarray(keys),
        )
        log.info("feature cache %s now holds %d texts", path, len(keys))
    blocks = [known[key] for key in wanted]
    owners = np.concatenate([np.full(len(block), i, dtype=np.int64) for i, block in enumerate(blocks)])
    return np.concatenate(blocks), owners
