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


def _tiny_recogniser_with_adapter(folder: Path) -> tuple[Path, Path]:
    """A recogniser folder in the shipped format over a tiny random base: IP reads a LoRA adapter tuned by the
    training code (SetFit's recipe, a few pairs), EX the frozen encoder."""
    from inference.contrastive import ContrastiveRecipe, save_adapter
    from inference.empathy.recogniser_train import tune_encoder
    from inference.risk.crisis import load_base_encoder
    from tests.support.tiny_risk import build_tiny_pooled_risk_model

    base = build_tiny_pooled_risk_model(folder / "risk") / "base"
    encoder, tokenizer = load_base_encoder(str(base), device="cpu", setting="test", what="a test")
    texts = ["it sounds like you feel alone", "you feel hurt", "have you tried a walk", "what happened"]
    recipe = ContrastiveRecipe(lr=5e-2, batch_pairs=4, blocks=(0, 1))
    tuned = tune_encoder(encoder, tokenizer, texts * 2, np.array([1, 1, 0, 0] * 2), seed=3, recipe=recipe)
    out = folder / "chat"
    save_adapter(tuned, out / "ip_adapter", str(base))
    rng = np.random.default_rng(0)
    config = RecogniserConfig(
        heads={
            "IP": HeadConfig(cutoff=0.5, c=1.0, adapter="ip_adapter"),
            "EX": HeadConfig(cutoff=0.5, c=1.0),
        },
        base_model=str(base),
        embedding_width=32,
    )
    weights = {
        m: rng.normal(0, 3, 32).astype(np.float32)
        for m in (Mechanism.INTERPRETATIONS, Mechanism.EXPLORATIONS)
    }
    RecogniserHeads(config, weights, {m: 0.0 for m in weights}).save(out)
    return out, base


def test_a_head_with_an_adapter_reads_the_tuned_encoder_and_the_others_the_frozen_one(tmp_path: Path) -> None:
    import json

    from inference.contrastive import adapted_copy
    from inference.risk.crisis import SentenceEncoder, load_base_encoder

    folder, base = _tiny_recogniser_with_adapter(tmp_path)
    assert json.loads((folder / "config.json").read_text())["format"] == "peercare-chat-recogniser/2"
    recogniser = ChatRecogniser.load(folder)
    replies = ["you feel alone", "what happened"]
    got = recogniser.probabilities(replies)
    encoder, tokenizer = load_base_encoder(str(base), device="cpu", setting="test", what="a test")
    frozen = SentenceEncoder(encoder, tokenizer, max_tokens=128).embed(replies)
    tuned = SentenceEncoder(adapted_copy(encoder, folder / "ip_adapter"), tokenizer, max_tokens=128).embed(
        replies
    )
    assert not np.allclose(frozen, tuned, atol=1e-4)  # the adapter is not the identity
    heads = recogniser.heads
    for mechanism, features in ((Mechanism.INTERPRETATIONS, tuned), (Mechanism.EXPLORATIONS, frozen)):
        expected = 1.0 / (1.0 + np.exp(-(features @ heads.weights[mechanism] + heads.biases[mechanism])))
        np.testing.assert_allclose(got[mechanism], expected, rtol=1e-5, atol=1e-6)


def test_a_recogniser_whose_adapter_is_missing_is_refused(tmp_path: Path) -> None:
    import shutil

    folder, _ = _tiny_recogniser_with_adapter(tmp_path)
    shutil.rmtree(folder / "ip_adapter")
    with pytest.raises(ModelLoadError, match="ip_adapter"):
        ChatRecogniser.load(folder)


def test_an_adapter_must_be_a_folder_beside_the_heads() -> None:
    with pytest.raises(ValueError, match="plain folder name"):
        HeadConfig(cutoff=0.5, c=1.0, adapter="../elsewhere")
