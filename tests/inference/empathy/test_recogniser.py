"""The chat recogniser: its files round-trip, it only ever raises a level, and it quotes its best sentence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.empathy.recogniser import (
    EMBEDDING_WIDTH,
    ChatRecogniser,
    HeadConfig,
    RecogniserConfig,
    RecogniserHeads,
    sentence_spans,
)
from inference.errors import ModelLoadError
from inference.types import EmpathyLevel, EmpathyResult, Mechanism, MechanismScore, RationaleSpan


class KeywordEmbedder:
    """A stand-in for the sentence encoder: dimension 0 is 1 when the text says 'sounds like'."""

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), EMBEDDING_WIDTH), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i, 0] = 1.0 if "sounds like" in text.lower() else 0.0
        return out


def _heads() -> RecogniserHeads:
    weight = np.zeros(EMBEDDING_WIDTH, dtype=np.float32)
    weight[0] = 10.0
    config = RecogniserConfig(
        heads={"IP": HeadConfig(cutoff=0.5, c=1.0, positives=("Reflection of feelings",))}
    )
    return RecogniserHeads(config, {Mechanism.INTERPRETATIONS: weight}, {Mechanism.INTERPRETATIONS: -5.0})


def _result(ip_level: int, spans: tuple[RationaleSpan, ...] = ()) -> EmpathyResult:
    def score(
        mechanism: Mechanism, level: int = 0, rationales: tuple[RationaleSpan, ...] = ()
    ) -> MechanismScore:
        probabilities = [0.0, 0.0, 0.0]
        probabilities[level] = 1.0
        return MechanismScore(mechanism, EmpathyLevel(level), tuple(probabilities), rationales)  # type: ignore[arg-type]

    return EmpathyResult(
        emotional_reactions=score(Mechanism.EMOTIONAL_REACTIONS),
        interpretations=score(Mechanism.INTERPRETATIONS, ip_level, spans),
        explorations=score(Mechanism.EXPLORATIONS),
    )


def test_heads_round_trip_through_safetensors_and_json(tmp_path: Path) -> None:
    heads = _heads()
    heads.save(tmp_path)
    loaded = RecogniserHeads.load(tmp_path)
    assert loaded.config == heads.config
    features = np.eye(2, EMBEDDING_WIDTH, dtype=np.float32)
    np.testing.assert_allclose(
        loaded.probabilities(features)[Mechanism.INTERPRETATIONS],
        heads.probabilities(features)[Mechanism.INTERPRETATIONS],
    )


def test_weights_of_the_wrong_width_are_refused(tmp_path: Path) -> None:
    heads = _heads()
    config = RecogniserConfig(heads={"IP": HeadConfig(cutoff=0.5, c=1.0, features="reply+seeker")})
    RecogniserHeads(config, heads.weights, heads.biases).save(tmp_path)
    with pytest.raises(ModelLoadError, match="768-wide"):
        RecogniserHeads.load(tmp_path)


def test_a_reflection_missed_by_the_bi_encoder_becomes_weak_with_its_sentence_quoted() -> None:
    recogniser = ChatRecogniser(_heads(), KeywordEmbedder())
    reply = "Oh no. It sounds like you feel left out!"
    (result,) = recogniser.apply([_result(0)], [reply])
    ip = result.interpretations
    assert ip.level is EmpathyLevel.WEAK
    assert [span.text for span in ip.rationales] == ["It sounds like you feel left out!"]
    assert ip.recogniser_probability is not None and ip.recogniser_probability > 0.5
    assert result.emotional_reactions.level is EmpathyLevel.NONE  # no head for ER: untouched


def test_the_recogniser_never_lowers_a_level_or_replaces_its_rationale() -> None:
    recogniser = ChatRecogniser(_heads(), KeywordEmbedder())
    span = RationaleSpan(0, 5, "Study")
    (result,) = recogniser.apply([_result(2, (span,))], ["Study more."])
    assert result.interpretations.level is EmpathyLevel.STRONG
    assert result.interpretations.rationales == (span,)
    (quiet,) = recogniser.apply([_result(0)], ["Study more."])
    assert quiet.interpretations.level is EmpathyLevel.NONE and quiet.interpretations.rationales == ()


def test_sentence_spans_cover_chat_without_punctuation_as_one_sentence() -> None:
    assert sentence_spans("i get that  ") == [(0, 10)]
    text = "That sucks. What happened?\nim here"
    assert [text[s:e] for s, e in sentence_spans(text)] == ["That sucks.", "What happened?", "im here"]
