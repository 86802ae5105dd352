"""The crisis head: the probability that a message says its writer may be in danger now (the high tier).

Why a separate head: the ``suicidal`` head learned what separates r/SuicideWatch from r/depression posts, and
short posts look "suicidal" to it, so "hello" paged moderators. This head reads *what a message says*: an
all-MiniLM-L6-v2 sentence embedding (the model's own recipe: mean of the last layer, L2-normalised) of the
chat-normalised text, scored per chunk (the whole message and sentence pairs) and maxed, so neither length
nor markup decides. Its weights are a few kB of safetensors beside a JSON config; nothing is pickled.
See docs/models/risk-crisis-protocol.md for how it was chosen.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from inference.risk.chat_text import chunks, normalise_chat, own_words, reading
from inference.risk.lexical import LexicalHead

CRISIS_LABEL = "crisis"
CONFIG_FILE = "crisis_head.json"
WEIGHTS_FILE = "crisis_head.safetensors"
FORMAT = "peercare-crisis-head/1"
KINDS = ("logreg", "prototypes", "ensemble")


# The prototypes are every training row's unit vector (thousands of rows): half precision keeps the file a few
# MB, and a cosine of unit vectors moves by about 1e-3 at most. Everything else stays float32.
_STORED_DTYPE = {"positive": np.float16, "negative": np.float16}


def read_message(text: str) -> str:
    """What the head reads of a message, for its chunks and its word-level logit alike: the writer's own lines
    (``own_words``: Discord block quotes left out), chat-normalised."""
    return normalise_chat(own_words(text))


class CrisisHeadError(ValueError):
    """A crisis-head folder that cannot be read; the message names the file and what is wrong."""


@dataclass(frozen=True)
class CrisisHeadConfig:
    """How the head reads a message; written beside the weights so a loader reads exactly what training used."""

    kind: str = "logreg"
    base_model: str = "all-MiniLM-L6-v2"
    chunk_window: int = 0  # 0: the whole message only; n: also every run of n consecutive sentences
    max_tokens: int = 256
    temperature: float = 1.0
    neighbours: int = 5  # prototypes and ensemble
    # A PEFT LoRA folder (inside the model folder) tuning the base encoder for this head; None = frozen.
    adapter: str | None = None
    # Hidden states to read (0 = embeddings, n = block n), each mean-pooled and L2-normalised, concatenated;
    # None = the model's own sentence embedding (the last layer). Lower layers keep more of the wording
    # (tense, person, "lol") than the last one's topic: attempt 3 of the protocol chose (2, 4, 6).
    layers: tuple[int, ...] | None = None
    # A word-level head (TF-IDF + logistic regression, plain JSON) whose logit is added to the embedding head's,
    # read from this file in the model folder; None = none. Attempt 3's F and attempt 5.
    lexical: str | None = None
    # A second, frozen-encoder crisis head in this sub-folder whose logit is blended with this one's: the message's
    # logit is blend_weight x this head's + (1 - blend_weight) x the partner's (attempt 16: a tuned and a frozen head
    # err on partly different messages). None = this head alone.
    blend: str | None = None
    blend_weight: float = 1.0
    # An ensemble's logit is prototype_share x its prototype logit + the rest x its logistic-regression logit (word
    # logit included): H's mean until attempt 26; attempt 27 declared 0.7 (a larger pool makes neighbours tell more).
    prototype_share: float = 0.5
    format: str = FORMAT

    def __post_init__(self) -> None:
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(layer) for layer in self.layers))
            if not self.layers or min(self.layers) < 0:
                raise CrisisHeadError("crisis head layers must be a non-empty list of hidden-state indices")
        if self.format != FORMAT:
            raise CrisisHeadError(f"crisis head format {self.format!r} is not {FORMAT!r}")
        if self.kind not in KINDS:
            raise CrisisHeadError(f"crisis head kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.kind == "ensemble" and self.layers is None:
            raise CrisisHeadError("an ensemble crisis head needs layers (its prototypes read the last one)")
        if not 0.0 < self.prototype_share < 1.0:
            raise CrisisHeadError("a crisis head's prototype_share must be between 0 and 1")
        if self.blend is not None and not 0.0 < self.blend_weight < 1.0:
            raise CrisisHeadError(
                "a blended crisis head needs a blend_weight between 0 and 1 (its own share)"
            )
        if self.chunk_window < 0 or self.max_tokens < 8 or self.temperature <= 0 or self.neighbours < 1:
            raise CrisisHeadError(
                "crisis head config has an out-of-range chunk_window/max_tokens/temperature"
            )


class Embedder(Protocol):
    """Anything that turns texts into the head's embeddings: a ``SentenceEncoder``, or training's cache of one."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class SentenceEncoder:
    """all-MiniLM-L6-v2's sentence embedding over any BERT-style encoder already in memory; with ``layers``,
    the chosen hidden states pooled the same way and concatenated."""

    def __init__(
        self,
        encoder: torch.nn.Module,
        tokenizer: Any,
        *,
        max_tokens: int = 256,
        device: str = "cpu",
        layers: Sequence[int] | None = None,
    ):
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.device = device
        self.layers = tuple(layers) if layers is not None else None
        depth = getattr(getattr(encoder, "config", None), "num_hidden_layers", None)
        if self.layers and isinstance(depth, int) and max(self.layers) > depth:
            raise CrisisHeadError(
                f"the crisis head reads hidden state {max(self.layers)} but its encoder has {depth} layers"
            )

    @property
    def width(self) -> int:
        return _hidden_size(self.encoder) * (len(self.layers) if self.layers else 1)

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """(n, width) float32 rows of unit vectors; shorter texts first so batches pad little."""
        out = np.zeros((len(texts), self.width), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = self.tokenizer(
                [texts[row] for row in rows],
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.encoder(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                output_hidden_states=self.layers is not None,
            )
            if self.layers is None:
                chosen = [hidden.last_hidden_state if hasattr(hidden, "last_hidden_state") else hidden[0]]
            else:
                chosen = [hidden.hidden_states[layer] for layer in self.layers]
            mask = batch["attention_mask"].unsqueeze(-1)
            pooled = [_mean_pooled_unit(states, mask) for states in chosen]
            out[rows] = torch.cat(pooled, dim=-1).cpu().numpy()
        return out


def _mean_pooled_unit(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens, L2-normalised (sentence-transformers' recipe for this model), in float32."""
    weights = mask.to(states.dtype)
    pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled.float(), dim=-1)


def load_base_encoder(source: str, *, device: str, setting: str, what: str) -> tuple[torch.nn.Module, Any]:
    """The encoder and tokenizer a head reads (``what`` names the head in the error), in eval mode on ``device``;
    a folder or package that cannot be read is a ``ModelLoadError`` naming ``setting``."""
    from transformers import AutoModel, AutoTokenizer

    from inference.errors import ModelLoadError
    from inference.sources import resolve_source

    base = resolve_source(source, setting=setting)
    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
        encoder = AutoModel.from_pretrained(base).to(device).eval()
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot load {what}'s encoder {source!r}: {type(exc).__name__}: {exc}", setting=setting
        ) from exc
    return encoder, tokenizer


def _hidden_size(encoder: torch.nn.Module) -> int:
    config = getattr(encoder, "config", None)
    size = getattr(config, "hidden_size", None)
    if not isinstance(size, int):
        raise CrisisHeadError("the crisis head's encoder has no config.hidden_size")
    return size


@dataclass(frozen=True)
class CrisisHead:
    """A logit per embedding: logistic regression, or Platt-scaled nearest-prototype margin; plus, when the
    config names one, a word-level logit over the whole (normalised) message; and, when it names a blend, the
    partner head's logit over its own (frozen) reader, weighted in."""

    config: CrisisHeadConfig
    tensors: dict[str, np.ndarray]
    lexical: LexicalHead | None = None
    partner: CrisisHead | None = None
    # What the partner reads: the frozen base encoder (the scorer attaches it with ``reading_partner_with``).
    partner_reader: Embedder | None = None

    def reading_partner_with(self, reader: Embedder) -> CrisisHead:
        """This head with its partner's reader attached (the partner reads another encoder than this head)."""
        return replace(self, partner_reader=reader)

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        if self.config.kind == "logreg":
            return self._regression_logits(embeddings)
        if self.config.kind == "prototypes":
            return self._prototype_logits(embeddings)
        # Attempt 10's H: the prototypes read the last layer's block, which is the sentence embedding B was
        # chosen on, so both halves come from one encoder pass.
        last_block = last_layer_block(embeddings, self.config.layers)
        share = self.config.prototype_share
        return (1 - share) * self._regression_logits(embeddings) + share * self._prototype_logits(last_block)

    def _regression_logits(self, embeddings: np.ndarray) -> np.ndarray:
        return embeddings @ self.tensors["weight"] + float(self.tensors["bias"][0])

    def _prototype_logits(self, embeddings: np.ndarray) -> np.ndarray:
        k = self.config.neighbours
        positive = _top_k_mean(_similarities(embeddings, self.tensors["positive"]), k)
        negative = _top_k_mean(_similarities(embeddings, self.tensors["negative"]), k)
        scale, shift = self.tensors["platt"]
        return scale * (positive - negative) + shift

    @property
    def word_weight(self) -> float:
        """How much of the word-level logit counts: all of it, or an ensemble's share of its regression half."""
        return 1 - self.config.prototype_share if self.config.kind == "ensemble" else 1.0

    def message_texts(self, texts: Sequence[str]) -> tuple[list[str], list[int]]:
        """Every chunk the head reads (``read_message``), and the message each belongs to."""
        pieces: list[str] = []
        owners: list[int] = []
        for index, text in enumerate(texts):
            found = chunks(read_message(text), window=self.config.chunk_window) or ["."]
            pieces.extend(found)
            owners.extend([index] * len(found))
        return pieces, owners

    def probabilities(self, encoder: Embedder, texts: Sequence[str]) -> list[float]:
        """P(crisis) per message: sigmoid of its logit (``message_logits``) over the calibrated temperature."""
        if not texts:
            return []
        best = self.message_logits(encoder, texts)
        return [float(p) for p in 1.0 / (1.0 + np.exp(-best / self.config.temperature))]

    def message_logits(self, encoder: Embedder, texts: Sequence[str]) -> np.ndarray:
        """Each message's logit: the largest of its chunks' logits, plus the word-level logit where the head has
        one. Training judges out-of-fold messages by this same number."""
        pieces, owners = self.message_texts(texts)
        best = np.full(len(texts), -np.inf)
        np.maximum.at(best, np.asarray(owners), self.logits(encoder.embed(pieces)))
        own = best + self.word_weight * self.word_logits(texts)
        if self.partner is None:
            return own
        if self.partner_reader is None:
            raise CrisisHeadError(
                "a blended crisis head was asked to score before its partner's reader was attached"
            )
        weight = self.config.blend_weight
        return weight * own + (1.0 - weight) * self.partner.message_logits(self.partner_reader, texts)

    def word_logits(self, texts: Sequence[str]) -> np.ndarray:
        """The word-level logit of each whole message as training read it (0 without a word-level head)."""
        if self.lexical is None:
            return np.zeros(len(texts))
        return self.lexical.logits([reading(read_message(text)) for text in texts])[:, 0].astype(np.float64)

    # -- files -----------------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        from safetensors.numpy import save_file

        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(json.dumps({"config": asdict(self.config)}, indent=2) + "\n")
        save_file(
            {
                name: np.ascontiguousarray(value, dtype=_STORED_DTYPE.get(name, np.float32))
                for name, value in self.tensors.items()
            },
            str(folder / WEIGHTS_FILE),
        )
        if self.lexical is not None and self.config.lexical:
            (folder / self.config.lexical).write_text(
                json.dumps(self.lexical.to_json(), separators=(",", ":")) + "\n", encoding="utf-8"
            )
        if self.partner is not None and self.config.blend:
            self.partner.save(folder / self.config.blend)

    @classmethod
    def load(cls, folder: Path) -> CrisisHead | None:
        """The folder's crisis head, or None when it has none (older models keep their old high tier)."""
        config_path = folder / CONFIG_FILE
        if not config_path.exists():
            return None
        from safetensors.numpy import load_file

        try:
            raw = json.loads(config_path.read_text())
            config = CrisisHeadConfig(**raw["config"])
            tensors = {
                name: value.astype(np.float32) for name, value in load_file(folder / WEIGHTS_FILE).items()
            }
            lexical = None
            if config.lexical:
                lexical = LexicalHead.from_json(
                    json.loads((folder / config.lexical).read_text(encoding="utf-8"))
                )
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise CrisisHeadError(
                f"cannot read the crisis head in {folder}: {type(exc).__name__}: {exc}"
            ) from exc
        needed = {
            "logreg": ("weight", "bias"),
            "prototypes": ("positive", "negative", "platt"),
            "ensemble": ("weight", "bias", "positive", "negative", "platt"),
        }[config.kind]
        missing = [name for name in needed if name not in tensors]
        if missing:
            raise CrisisHeadError(
                f"{folder / WEIGHTS_FILE} lacks {', '.join(missing)} for a {config.kind} head"
            )
        return cls(config, tensors, lexical, partner=_blend_partner(folder, config))


def _blend_partner(folder: Path, config: CrisisHeadConfig) -> CrisisHead | None:
    """The frozen head a blended config names, read from its sub-folder; None when the config names none."""
    if config.blend is None:
        return None
    partner = CrisisHead.load(folder / config.blend)
    if partner is None:
        raise CrisisHeadError(
            f"{folder / CONFIG_FILE} blends with {config.blend!r}, which holds no crisis head"
        )
    if partner.config.adapter or partner.config.blend:
        raise CrisisHeadError(
            f"{folder / config.blend / CONFIG_FILE}: a blend's partner reads the frozen encoder and blends nothing"
        )
    return partner


def last_layer_block(embeddings: np.ndarray, layers: Sequence[int] | None) -> np.ndarray:
    """The last layer's block of embeddings that concatenate ``layers`` (each one hidden size wide); the whole
    embedding when it reads one layer."""
    width = embeddings.shape[1] // len(layers or (None,))
    return embeddings[:, embeddings.shape[1] - width :]


def _similarities(embeddings: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """Cosine similarity of each (unit) embedding to each (unit) prototype, computed by torch.

    Not numpy: numpy's OpenBLAS runs a one-message product against thousands of prototypes on its own threads,
    and on two busy cores that took 8 ms where torch, on the threads the process gave it, takes 0.3 ms
    (measured 2026-12-07; bench/RESULTS.md, the ensemble head's cost)."""
    vectors = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
    table = torch.from_numpy(np.ascontiguousarray(prototypes, dtype=np.float32))
    return (vectors @ table.T).numpy()


def _top_k_mean(similarities: np.ndarray, k: int) -> np.ndarray:
    k = min(k, similarities.shape[1])
    return np.sort(similarities, axis=1)[:, -k:].mean(axis=1)
