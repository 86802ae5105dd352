"""The chat mechanism recogniser: a per-mechanism floor so a chat-style reflection is never scored 'none'.

Why: the shipped ER/IP/EX bi-encoders learned Reddit and miss reflections typed as chat (issue 14). This
reads an all-MiniLM-L6-v2 sentence embedding (``SentenceEncoder``: mean of the last layer, L2-normalised) of
the reply, and optionally of the seeker post, and scores it with one logistic-regression head per mechanism,
trained on ESConv supporter strategies (see docs/models/empathy-chat-recogniser-protocol.md). A head may read
the encoder with a LoRA adapter of its own merged in (``HeadConfig.adapter``, a peft folder beside the heads,
tuned contrastively by ``inference.contrastive``). A mechanism whose probability reaches its cut-off gets at
least level 1; the rationale is the reply's sentence the head scores highest. It only ever raises a level.
Weights: a few kB of safetensors beside a JSON config (and about 1 MB per adapter).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from inference.errors import ModelLoadError
from inference.types import EmpathyLevel, EmpathyResult, Mechanism, RationaleSpan

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "heads.safetensors"
FORMAT = "peercare-chat-recogniser/1"
# Written when a head reads an adapted encoder: a /1 reader would score that head over the frozen encoder.
ADAPTED_FORMAT = "peercare-chat-recogniser/2"
FEATURES = ("reply", "reply+seeker")
SETTING = "EMPATHY_CHAT_RECOGNISER"
EMBEDDING_WIDTH = 384  # all-MiniLM-L6-v2

# Sentence ends (., !, ?, …) and line breaks: chat often has neither, and then the whole reply is one sentence.
_SENTENCE = re.compile(r"[^.!?…\n]+[.!?…]*")
_FOLDER_NAME = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class HeadConfig:
    """One mechanism's head: what it reads, which strategies were its positives, its C, and its cut-off.
    ``adapter``: the folder (beside the heads) of the LoRA adapter merged into the encoder this head reads;
    None = the frozen encoder."""

    cutoff: float
    c: float
    features: str = "reply"
    positives: tuple[str, ...] = ()
    adapter: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.cutoff <= 1.0:
            raise ValueError(f"a recogniser cut-off must be in (0, 1], not {self.cutoff}")
        if self.features not in FEATURES:
            raise ValueError(f"recogniser features {self.features!r} is not one of {', '.join(FEATURES)}")
        if self.adapter is not None:
            if not _FOLDER_NAME.fullmatch(self.adapter):
                raise ValueError(f"a recogniser adapter must be a plain folder name, not {self.adapter!r}")
            if self.features != "reply":
                raise ValueError(
                    "a head with an adapter reads the reply only (seeker posts use the frozen encoder)"
                )

    def width(self, embedding_width: int = EMBEDDING_WIDTH) -> int:
        return embedding_width * (2 if self.features == "reply+seeker" else 1)


@dataclass(frozen=True)
class RecogniserConfig:
    """How the recogniser reads a pair; written beside the weights so a loader reads exactly what training used."""

    heads: Mapping[str, HeadConfig]
    base_model: str = "all-MiniLM-L6-v2"
    max_tokens: int = 128
    format: str = FORMAT
    training: Mapping[str, Any] = field(default_factory=dict)
    embedding_width: int = EMBEDDING_WIDTH

    def __post_init__(self) -> None:
        if self.format not in (FORMAT, ADAPTED_FORMAT):
            raise ValueError(f"recogniser format {self.format!r} is not {FORMAT!r} or {ADAPTED_FORMAT!r}")
        # The format follows the heads: /2 exactly when one of them reads an adapter.
        object.__setattr__(self, "format", ADAPTED_FORMAT if self.adapters else FORMAT)
        unknown = [code for code in self.heads if code not in {m.value for m in Mechanism}]
        if unknown:
            raise ValueError(f"recogniser heads for unknown mechanisms: {', '.join(unknown)}")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["heads"] = {code: asdict(head) for code, head in self.heads.items()}
        return data

    @property
    def adapters(self) -> tuple[str, ...]:
        """The adapter folders the heads read, each once, in order."""
        return tuple(dict.fromkeys(h.adapter for h in self.heads.values() if h.adapter is not None))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecogniserConfig:
        heads = {
            code: HeadConfig(
                cutoff=float(h["cutoff"]),
                c=float(h["c"]),
                features=str(h.get("features", "reply")),
                positives=tuple(h.get("positives", ())),
                adapter=h.get("adapter"),
            )
            for code, h in dict(data["heads"]).items()
        }
        rest = {k: v for k, v in data.items() if k != "heads"}
        return cls(heads=heads, **rest)


@dataclass(frozen=True)
class RecogniserHeads:
    """The weights: a vector and a bias per mechanism over the feature vector."""

    config: RecogniserConfig
    weights: Mapping[Mechanism, np.ndarray]
    biases: Mapping[Mechanism, float]

    @property
    def mechanisms(self) -> tuple[Mechanism, ...]:
        return tuple(Mechanism(code) for code in self.config.heads)

    @property
    def uses_seeker(self) -> bool:
        return any(head.features == "reply+seeker" for head in self.config.heads.values())

    def probabilities(
        self,
        replies: np.ndarray | None,
        seekers: np.ndarray | None = None,
        *,
        adapted: Mapping[str, np.ndarray] | None = None,
        mechanisms: Sequence[Mechanism] | None = None,
    ) -> dict[Mechanism, np.ndarray]:
        """Per mechanism (all, or ``mechanisms``), the probability for each row of reply (and seeker)
        embeddings; a head with an adapter reads ``adapted[its adapter]`` instead of ``replies``."""
        out = {}
        for mechanism in mechanisms or self.mechanisms:
            head = self.config.heads[mechanism.value]
            features = replies if head.adapter is None else (adapted or {}).get(head.adapter)
            if features is None:
                raise ValueError(
                    f"the {mechanism.value} recogniser reads the {head.adapter or 'frozen'} encoder's "
                    "embeddings: give them"
                )
            if head.features == "reply+seeker":
                if seekers is None:
                    raise ValueError(
                        f"the {mechanism.value} recogniser reads the seeker post too: give its embedding"
                    )
                features = np.concatenate([replies, seekers], axis=1)
            logits = features @ self.weights[mechanism] + self.biases[mechanism]
            out[mechanism] = 1.0 / (1.0 + np.exp(-logits))
        return out

    def cutoff(self, mechanism: Mechanism) -> float:
        return self.config.heads[mechanism.value].cutoff

    def save(self, folder: Path) -> None:
        from safetensors.numpy import save_file

        folder.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for mechanism in self.mechanisms:
            tensors[f"{mechanism.value}.weight"] = np.asarray(self.weights[mechanism], dtype=np.float32)
            tensors[f"{mechanism.value}.bias"] = np.asarray([self.biases[mechanism]], dtype=np.float32)
        save_file(tensors, str(folder / WEIGHTS_FILE))
        (folder / CONFIG_FILE).write_text(
            json.dumps(self.config.to_json(), indent=2) + "\n", encoding="utf-8"
        )

    @classmethod
    def load(cls, folder: Path) -> RecogniserHeads:
        from safetensors.numpy import load_file

        try:
            config = RecogniserConfig.from_json(
                json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
            )
            tensors = load_file(str(folder / WEIGHTS_FILE))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(
                f"cannot read the chat recogniser in {folder}: {type(exc).__name__}: {exc}", setting=SETTING
            ) from exc
        weights, biases = {}, {}
        for code, head in config.heads.items():
            width = head.width(config.embedding_width)
            mechanism = Mechanism(code)
            weight = tensors.get(f"{code}.weight")
            bias = tensors.get(f"{code}.bias")
            if weight is None or bias is None or weight.shape != (width,):
                raise ModelLoadError(
                    f"the chat recogniser in {folder} has no {width}-wide weights for {code}", setting=SETTING
                )
            weights[mechanism] = weight.astype(np.float32)
            biases[mechanism] = float(bias[0])
        return cls(config, weights, biases)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the reply's sentences (trimmed), in order; at least the whole text."""
    spans = []
    for match in _SENTENCE.finditer(text):
        start, end = match.span()
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if any(ch.isalnum() for ch in text[start:end]):
            spans.append((start, end))
    return spans or [(0, len(text))]


class ChatRecogniser:
    """Heads plus the sentence encoder they read; ``apply`` raises the bi-encoders' levels where it fires."""

    def __init__(
        self, heads: RecogniserHeads, embedder: Any, adapted: Mapping[str, Any] | None = None
    ) -> None:
        """``embedder``: the frozen sentence encoder; ``adapted``: one per adapter the heads name."""
        missing = [name for name in heads.config.adapters if name not in (adapted or {})]
        if missing:
            raise ValueError(f"no encoder for the recogniser adapter(s) {', '.join(missing)}")
        self.heads = heads
        self.embedder = embedder
        self.adapted = dict(adapted or {})

    @classmethod
    def load(cls, source: str | Path, *, device: str = "cpu") -> ChatRecogniser:
        from inference.contrastive import adapted_copy
        from inference.risk.crisis import SentenceEncoder, load_base_encoder
        from inference.sources import resolve_source

        folder = resolve_source(source, setting=SETTING)
        heads = RecogniserHeads.load(folder)
        encoder, tokenizer = load_base_encoder(
            heads.config.base_model, device=device, setting=SETTING, what="the chat recogniser"
        )

        def reader(model: Any) -> SentenceEncoder:
            return SentenceEncoder(model, tokenizer, max_tokens=heads.config.max_tokens, device=device)

        adapted = {}
        for name in heads.config.adapters:
            try:
                adapted[name] = reader(adapted_copy(encoder, folder / name).eval())
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                raise ModelLoadError(
                    f"cannot read the chat recogniser's adapter {folder / name}: {type(exc).__name__}: {exc}",
                    setting=SETTING,
                ) from exc
        return cls(heads, reader(encoder), adapted)

    @property
    def uses_seeker(self) -> bool:
        return self.heads.uses_seeker

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The frozen encoder's sentence embeddings (what seeker posts and unadapted heads read)."""
        return self.embedder.embed(list(texts))

    def probabilities(
        self,
        replies: Sequence[str],
        seeker_embeddings: np.ndarray | None = None,
        mechanisms: Sequence[Mechanism] | None = None,
    ) -> dict[Mechanism, np.ndarray]:
        """Each encoder the chosen heads read runs once over ``replies``."""
        chosen = [self.heads.config.heads[m.value] for m in mechanisms or self.heads.mechanisms]
        frozen = self.embed(replies) if any(head.adapter is None for head in chosen) else None
        names = dict.fromkeys(head.adapter for head in chosen if head.adapter is not None)
        adapted = {name: self.adapted[name].embed(list(replies)) for name in names}
        return self.heads.probabilities(frozen, seeker_embeddings, adapted=adapted, mechanisms=mechanisms)

    def apply(
        self,
        results: Sequence[EmpathyResult],
        replies: Sequence[str],
        seeker_embeddings: np.ndarray | None = None,
    ) -> list[EmpathyResult]:
        """The results with each mechanism's level raised to 1 where the recogniser fires (never lowered)."""
        if not replies:
            return []
        probabilities = self.probabilities(replies, seeker_embeddings)
        out = []
        for i, (result, reply) in enumerate(zip(results, replies, strict=True)):
            by_mechanism = result.by_mechanism()
            for mechanism in self.heads.mechanisms:
                score = by_mechanism[mechanism]
                probability = float(probabilities[mechanism][i])
                raised = probability >= self.heads.cutoff(mechanism) and score.level == EmpathyLevel.NONE
                by_mechanism[mechanism] = replace(
                    score,
                    level=EmpathyLevel.WEAK if raised else score.level,
                    rationales=(self._best_sentence(mechanism, reply, seeker_embeddings, i),)
                    if raised
                    else score.rationales,
                    recogniser_probability=probability,
                )
            out.append(
                EmpathyResult(
                    emotional_reactions=by_mechanism[Mechanism.EMOTIONAL_REACTIONS],
                    interpretations=by_mechanism[Mechanism.INTERPRETATIONS],
                    explorations=by_mechanism[Mechanism.EXPLORATIONS],
                )
            )
        return out

    def _best_sentence(
        self, mechanism: Mechanism, reply: str, seeker_embeddings: np.ndarray | None, row: int
    ) -> RationaleSpan:
        spans = sentence_spans(reply)
        if len(spans) > 1:
            seekers = (
                None
                if seeker_embeddings is None
                else np.repeat(seeker_embeddings[row : row + 1], len(spans), 0)
            )
            scores = self.probabilities([reply[s:e] for s, e in spans], seekers, (mechanism,))[mechanism]
            start, end = spans[int(np.argmax(scores))]
        else:
            start, end = spans[0]
        return RationaleSpan.of(reply, start, end)
