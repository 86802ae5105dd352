"""Score replies for ER, IP and EX at once: encode each seeker post once, then score many replies against it."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch import nn

from inference.empathy.checkpoints import LoadedBiEncoder, load_bi_encoder
from inference.empathy.model import EmpathyBiEncoder, encoder_states
from inference.empathy.phatic import by_definition
from inference.empathy.text import Tokenized, merge_token_spans, tokenize
from inference.errors import InputRejected, ModelLoadError
from inference.types import EmpathyLevel, EmpathyResult, Mechanism, MechanismScore

if TYPE_CHECKING:
    from inference.empathy.recogniser import ChatRecogniser

log = logging.getLogger(__name__)

SETTINGS = {
    Mechanism.EMOTIONAL_REACTIONS: "EMPATHY_ER_MODEL",
    Mechanism.INTERPRETATIONS: "EMPATHY_IP_MODEL",
    Mechanism.EXPLORATIONS: "EMPATHY_EX_MODEL",
}
SHARED = "shared"


@dataclass(frozen=True, eq=False)
class SeekerEncoding:
    """One seeker post encoded for every mechanism; cache it (e.g. in an LRU by message id) and reuse it.

    ``states`` maps a seeker-encoder group ("shared", or a mechanism's code when encoders differ) to the
    encoder's hidden states for this post: ``[tokens, hidden]`` on the scorer's device. ``length`` is the
    number of real tokens; rows past it are padding, kept only for models trained without a seeker mask.
    ``sentence`` is the post's sentence embedding when the scorer's chat recogniser reads seeker posts.
    """

    states: Mapping[str, torch.Tensor]
    length: int
    sentence: Any = None


class _ResponderPass(NamedTuple):
    """One responder encoder's pass over a batch of replies: the tokens, padded ids and mask, and its states."""

    tokens: list[Tokenized]
    ids: torch.Tensor
    mask: torch.Tensor
    states: torch.Tensor


class EmpathyScorer:
    """ER, IP and EX bi-encoders behind one batched interface.

    Modules live in two dicts (``seeker_encoders`` by group, ``responders`` by mechanism) and are looked
    up on every call, so a caller may swap them (e.g. for dynamic int8 versions). An optional chat
    recogniser (``inference/empathy/recogniser.py``) raises a mechanism to level 1 where it fires. A reply
    that is only a greeting, thanks or acknowledgement shows no mechanism (``inference/empathy/phatic.py``).
    """

    def __init__(
        self,
        loaded: Mapping[Mechanism, LoadedBiEncoder],
        *,
        device: str | torch.device = "cpu",
        shares_seeker_encoder: bool,
        recogniser: ChatRecogniser | None = None,
    ) -> None:
        missing = [m.value for m in Mechanism if m not in loaded]
        if missing:
            raise ModelLoadError(f"no empathy model for {', '.join(missing)}")
        self.device = torch.device(device)
        self.shares_seeker_encoder = shares_seeker_encoder
        self.recogniser = recogniser
        self.max_length = max(item.model.config.max_length for item in loaded.values())
        self.tokenizers = {m: loaded[m].tokenizer for m in Mechanism}
        self.pad_ids = {m: loaded[m].pad_id for m in Mechanism}
        self.configs = {m: loaded[m].model.config for m in Mechanism}
        self.sources = {m: loaded[m].source for m in Mechanism}
        self.seeker_group = {m: (SHARED if shares_seeker_encoder else m.value) for m in Mechanism}
        self.seeker_encoders: dict[str, nn.Module] = {}
        for mechanism in Mechanism:
            model = loaded[mechanism].model
            group = self.seeker_group[mechanism]
            if group not in self.seeker_encoders:
                self.seeker_encoders[group] = model.seeker_encoder
            # The scorer owns the seeker encoders; a responder side never runs its own copy.
            model.seeker_encoder = None
        self.responders: dict[Mechanism, EmpathyBiEncoder] = {m: loaded[m].model for m in Mechanism}
        # Groups whose seekers must be padded to exactly max_length (models trained without a seeker mask).
        self._pad_full = {
            group: any(not self.configs[m].seeker_mask for m in Mechanism if self.seeker_group[m] == group)
            for group in self.seeker_encoders
        }
        self._group_tokenizer = {
            group: next(m for m in Mechanism if self.seeker_group[m] == group)
            for group in self.seeker_encoders
        }

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        sources: Mapping[Mechanism, str | os.PathLike[str]],
        *,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        recogniser: str | os.PathLike[str] | None = None,
    ) -> EmpathyScorer:
        """Load the three models (any format each); one seeker encoder is kept if all three are identical.

        ``recogniser``: a chat recogniser folder (e.g. ``shipped:empathy-chat``), or None for none.
        """
        normalised = {Mechanism(m): src for m, src in sources.items()}
        missing = [m for m in Mechanism if m not in normalised]
        if missing:
            raise ModelLoadError(
                f"no empathy model configured for {', '.join(m.value for m in missing)}",
                setting=SETTINGS[missing[0]],
            )
        base_cache: dict[Path, nn.Module] = {}
        loaded = {
            m: load_bi_encoder(
                normalised[m],
                mechanism=m.value,
                setting=SETTINGS[m],
                device=device,
                dtype=dtype,
                base_cache=base_cache,
            )
            for m in Mechanism
        }
        shared = _seekers_identical(loaded)
        log.info(
            "empathy models loaded (%s); seeker encoder %s",
            ", ".join(f"{m.value}: {loaded[m].source_format}" for m in Mechanism),
            "shared by ER/IP/EX" if shared else "loaded once per mechanism",
        )
        chat = None
        if recogniser is not None:
            from inference.empathy.recogniser import ChatRecogniser

            chat = ChatRecogniser.load(recogniser, device=device)
        return cls(loaded, device=device, shares_seeker_encoder=shared, recogniser=chat)

    # -- public API ------------------------------------------------------------------------------

    def token_length(self, text: str) -> int:
        """Tokens this text takes in the model (special tokens included, at most ``max_length``)."""
        mechanism = Mechanism.EMOTIONAL_REACTIONS
        return len(self._tokenize(mechanism, [text])[0].input_ids)

    @torch.inference_mode()
    def encode_seekers(self, texts: Sequence[str]) -> list[SeekerEncoding]:
        """Encode seeker posts once for all three mechanisms (one encoder pass when the encoder is shared)."""
        _check_texts(texts, "seeker post")
        if not texts:
            return []
        per_group: dict[str, list[torch.Tensor]] = {}
        lengths: list[int] = []
        for group, encoder in self.seeker_encoders.items():
            tokens = self._tokenize(self._group_tokenizer[group], texts)
            lengths = [len(t.input_ids) for t in tokens]
            width = self.max_length if self._pad_full[group] else max(lengths)
            ids, mask = self._pad(tokens, self.pad_ids[self._group_tokenizer[group]], width)
            states = encoder_states(encoder, ids, mask)
            keep = width if self._pad_full[group] else None
            per_group[group] = [states[i, : (keep or lengths[i])].clone() for i in range(len(texts))]
        sentences = (
            self.recogniser.embed(texts)
            if self.recogniser is not None and self.recogniser.uses_seeker
            else None
        )
        return [
            SeekerEncoding(
                {group: rows[i] for group, rows in per_group.items()},
                lengths[i],
                None if sentences is None else sentences[i],
            )
            for i in range(len(texts))
        ]

    @torch.inference_mode()
    def score(self, seekers: Sequence[SeekerEncoding], replies: Sequence[str]) -> list[EmpathyResult]:
        """Score each reply against its seeker encoding; replies are padded to the longest in the batch."""
        if len(seekers) != len(replies):
            raise ValueError(f"{len(seekers)} seeker encodings for {len(replies)} replies")
        _check_texts(replies, "reply")
        if not replies:
            return []
        # Mechanisms whose responder encoder is one module (a multi-task model) share one pass over the replies.
        passes: dict[tuple[int, int, int, bool], _ResponderPass] = {}
        per_mechanism = {m: self._score_mechanism(m, seekers, replies, passes) for m in Mechanism}
        results = [
            EmpathyResult(
                emotional_reactions=per_mechanism[Mechanism.EMOTIONAL_REACTIONS][i],
                interpretations=per_mechanism[Mechanism.INTERPRETATIONS][i],
                explorations=per_mechanism[Mechanism.EXPLORATIONS][i],
            )
            for i in range(len(replies))
        ]
        if self.recogniser is not None:
            seeker_sentences = None
            if self.recogniser.uses_seeker:
                if any(seeker.sentence is None for seeker in seekers):
                    raise ValueError("seeker encoding has no sentence embedding; re-encode with this scorer")
                seeker_sentences = np.stack([seeker.sentence for seeker in seekers])
            results = self.recogniser.apply(results, replies, seeker_sentences)
        return [by_definition(result, reply) for result, reply in zip(results, replies, strict=True)]

    def score_pairs(self, seeker_texts: Sequence[str], replies: Sequence[str]) -> list[EmpathyResult]:
        """Convenience: encode the seeker posts, then score the replies against them."""
        return self.score(self.encode_seekers(seeker_texts), replies)

    # -- internals -------------------------------------------------------------------------------

    def _score_mechanism(
        self,
        mechanism: Mechanism,
        seekers: Sequence[SeekerEncoding],
        replies: Sequence[str],
        passes: dict[tuple[int, int, int, bool], _ResponderPass] | None = None,
    ) -> list[MechanismScore]:
        config = self.configs[mechanism]
        group = self.seeker_group[mechanism]
        model = self.responders[mechanism]
        seeker_states, seeker_mask = self._stack_seekers(seekers, group, full=not config.seeker_mask)
        # The same encoder reading the same tokens gives the same states: what a pass is keyed by. Views that
        # share a responder module come from one multi-task folder and read its tokenizer.
        key = (id(model.responder_encoder), self.pad_ids[mechanism], config.max_length, config.lowercase)
        passes = {} if passes is None else passes
        if key not in passes:
            tokens = self._tokenize(mechanism, replies)
            ids, mask = self._pad(tokens, self.pad_ids[mechanism], max(len(t.input_ids) for t in tokens))
            passes[key] = _ResponderPass(
                tokens, ids, mask, encoder_states(model.responder_encoder, ids, mask)
            )
        tokens, ids, mask, states = passes[key]
        level_logits, rationale_logits = model.score(seeker_states, seeker_mask, ids, mask, states)
        probabilities = torch.softmax(level_logits.float(), dim=-1).cpu()
        marked = (rationale_logits.argmax(dim=-1) == 1).cpu()
        scores = []
        for i, reply in enumerate(replies):
            probs = tuple(float(p) for p in probabilities[i].tolist())
            level = EmpathyLevel(int(probabilities[i].argmax()))
            # The rationale head lights up whole level-0 replies (upstream's labels): no highlights there.
            spans = (
                merge_token_spans(reply, tokens[i], marked[i].tolist()) if level > EmpathyLevel.NONE else ()
            )
            scores.append(MechanismScore(mechanism, level, probs, spans))  # type: ignore[arg-type]
        return scores

    def _stack_seekers(
        self, seekers: Sequence[SeekerEncoding], group: str, *, full: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rows = []
        for seeker in seekers:
            if not isinstance(seeker, SeekerEncoding) or group not in seeker.states:
                raise ValueError("seeker encodings must come from this scorer's encode_seekers")
            rows.append(seeker.states[group])
        if full:
            if any(row.shape[0] != self.max_length for row in rows):
                raise ValueError("seeker encoding was made without full padding; re-encode with this scorer")
            width = self.max_length
        else:
            width = max(seeker.length for seeker in seekers)
        hidden = rows[0].shape[-1]
        states = rows[0].new_zeros((len(rows), width, hidden))
        mask = torch.zeros((len(rows), width), dtype=torch.long, device=states.device)
        for i, (row, seeker) in enumerate(zip(rows, seekers, strict=True)):
            take = width if full else seeker.length
            states[i, :take] = row[:take]
            mask[i, : seeker.length] = 1
        return states, mask

    def _tokenize(self, mechanism: Mechanism, texts: Sequence[str]) -> list[Tokenized]:
        config = self.configs[mechanism]
        return tokenize(
            self.tokenizers[mechanism], list(texts), max_length=config.max_length, lowercase=config.lowercase
        )

    def _pad(self, tokens: Sequence[Tokenized], pad_id: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.full((len(tokens), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(tokens), width), dtype=torch.long)
        for i, item in enumerate(tokens):
            n = len(item.input_ids)
            ids[i, :n] = torch.tensor(item.input_ids, dtype=torch.long)
            mask[i, :n] = 1
        return ids.to(self.device), mask.to(self.device)


def _check_texts(texts: Sequence[str], what: str) -> None:
    for text in texts:
        if not isinstance(text, str):
            raise InputRejected(f"each {what} must be text, not {type(text).__name__}")
        if not text.strip():
            raise InputRejected(f"a {what} is empty: nothing to score")


def _seekers_identical(loaded: Mapping[Mechanism, LoadedBiEncoder]) -> bool:
    """True when the three seeker encoders (and how their text is tokenised) are the same."""
    first = loaded[Mechanism.EMOTIONAL_REACTIONS]
    for mechanism in (Mechanism.INTERPRETATIONS, Mechanism.EXPLORATIONS):
        other = loaded[mechanism]
        if other.model.config.max_length != first.model.config.max_length:
            return False
        if other.model.config.lowercase != first.model.config.lowercase or other.pad_id != first.pad_id:
            return False
        if other.tokenizer.get_vocab() != first.tokenizer.get_vocab():
            return False
        if not _same_weights(first.model.seeker_encoder, other.model.seeker_encoder):
            return False
    return True


def _same_weights(a: nn.Module | None, b: nn.Module | None) -> bool:
    if a is None or b is None:
        return False
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    state_a, state_b = a.state_dict(), b.state_dict()
    if state_a.keys() != state_b.keys():
        return False
    return all(state_a[k].shape == state_b[k].shape and torch.equal(state_a[k], state_b[k]) for k in state_a)
