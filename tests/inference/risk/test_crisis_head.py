"""The crisis head: chat normalisation, loading beside a risk model, and the high tier it decides."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inference.errors import ModelLoadError
from inference.risk.chat_text import chunks, normalise_chat, split_block_quotes
from inference.risk.crisis import CONFIG_FILE, CRISIS_LABEL, CrisisHead
from inference.risk.crisis_train import lowest_cut_off
from inference.risk.scorer import RiskScorer
from inference.types import RiskThresholds, RiskTier
from tests.support.tiny_risk import add_tiny_crisis_head, build_tiny_pooled_risk_model, build_tiny_risk_model

CRISIS_HIGH = RiskThresholds(elevated={"suicidal": 0.5, CRISIS_LABEL: 0.3}, high={CRISIS_LABEL: 0.6})


@pytest.mark.parametrize(
    "dressed",
    [
        "**I CAN'T DO THIS ANYMORE!!!**",
        "||i can't do this anymore!||",
        "> i can\u2019t do this anymore!",
        "i can't do this anymore\u200b!",
        "i can't do\u202e this anymore!",
        "<@123456789012345678> i can't do this anymore!!",
        "i can't do this  anymore\U000e0041!",
        "i can't do this anymore!!!!!",
        "i can't do this anymore 😭!",
        "😔 i can't do this 👋🏽 anymore!",
    ],
)
def test_markup_case_emoji_and_invisible_characters_do_not_change_what_the_head_reads(dressed):
    assert normalise_chat(dressed) == normalise_chat("i can't do this anymore!") == "i can't do this anymore!"


def test_stretched_letters_are_cut_to_two():
    assert normalise_chat("soooooo tired") == normalise_chat("sooo tired") == "soo tired"


def test_long_message_is_also_read_a_sentence_pair_at_a_time():
    text = normalise_chat("work was long. the bus was late. dinner was cold. i have the pills here.")
    pieces = chunks(text, window=2)
    assert pieces[0] == "work was long the bus was late dinner was cold i have the pills here"
    assert "dinner was cold i have the pills here" in pieces
    assert chunks(normalise_chat("hello"), window=2) == ["hello"]


def test_lines_sent_together_are_sentences():
    assert chunks(normalise_chat("i cant\nlike really\nits all here"), window=2)[1:] == [
        "i cant like really",
        "like really its all here",
    ]


@pytest.mark.parametrize(
    ("text", "own", "quoted"),
    [
        (
            "> i don't want to be here anymore\nare you safe right now?",
            "are you safe right now?",
            "> i don't want to be here anymore",
        ),
        ("thanks\n>>> line one\nline two", "thanks\n", ">>> line one\nline two"),
        (
            "> how are you holding up\\nhonestly not great",
            "honestly not great",
            "> how are you holding up",
        ),  # a literal \n
        (
            "> i can't do this anymore",
            "> i can't do this anymore",
            "",
        ),  # nothing else: the writer's own, styled
        (">no space is no quote\nhi", ">no space is no quote\nhi", ""),
    ],
)
def test_a_message_splits_into_the_writer_s_own_lines_and_the_block_quotes(text, own, quoted):
    assert split_block_quotes(text) == (own, quoted)


def test_the_crisis_head_reads_the_writer_s_own_lines(tmp_path):
    """A responder quoting "> i want to die" before offering help is not the one in danger (attempt 21)."""
    folder = add_tiny_crisis_head(build_tiny_pooled_risk_model(tmp_path / "risk", thresholds=CRISIS_HIGH))
    head, _ = RiskScorer.load(folder).crisis
    reply = "are you safe right now? you can call 988"
    assert head.message_texts([f"> i want to die\n{reply}"]) == head.message_texts([reply])
    assert head.message_texts(["> i want to die"]) == head.message_texts(["i want to die"])


def test_lowest_cut_off_allows_at_most_the_limit():
    scores = np.arange(1000, dtype=float)
    cut = lowest_cut_off(scores, 0.005)
    assert (scores >= cut).sum() == 5
    assert (scores >= cut - 1).sum() == 6  # any lower cut-off lets a sixth through


def test_pooled_model_with_crisis_head_reports_crisis_and_decides_high_by_it(tmp_path):
    folder = build_tiny_pooled_risk_model(
        tmp_path / "risk",
        forced={"suicidal": 0.95, "depression": 0.01, "stress": 0.01},
        thresholds=CRISIS_HIGH,
    )
    add_tiny_crisis_head(folder, forced=0.05)
    scorer = RiskScorer.load(folder)
    assert scorer.output_labels == ("suicidal", "depression", "stress", CRISIS_LABEL)
    [result] = scorer.predict(["hello"])
    assert result.probabilities[CRISIS_LABEL] == pytest.approx(0.05, abs=1e-4)
    # A "suicidal" probability of 0.95 no longer pages: it is elevated, the crisis head keeps it off high.
    assert result.tier == RiskTier.ELEVATED


def test_crisis_head_alone_can_make_a_message_high(tmp_path):
    folder = build_tiny_pooled_risk_model(
        tmp_path / "risk", forced={"suicidal": 0.01}, thresholds=CRISIS_HIGH
    )
    add_tiny_crisis_head(folder, forced=0.9)
    [result] = RiskScorer.load(folder).predict(["some words"])
    assert result.tier == RiskTier.HIGH
    assert result.triggered_labels == (CRISIS_LABEL,)


def test_restyled_message_gets_the_same_crisis_probability(tmp_path):
    folder = add_tiny_crisis_head(build_tiny_pooled_risk_model(tmp_path / "risk", thresholds=CRISIS_HIGH))
    scorer = RiskScorer.load(folder)
    plain, dressed = scorer.probabilities(["i want to die", "**I WANT TO DIE!!!** <@42>"])
    assert plain[CRISIS_LABEL] == pytest.approx(dressed[CRISIS_LABEL], abs=1e-6)
    assert plain["suicidal"] != pytest.approx(dressed["suicidal"], abs=1e-9)  # the old head did move


def test_crisis_adapter_is_merged_into_a_copy_of_the_encoder(tmp_path):
    plain_folder = add_tiny_crisis_head(build_tiny_pooled_risk_model(tmp_path / "a", thresholds=CRISIS_HIGH))
    tuned_folder = add_tiny_crisis_head(
        build_tiny_pooled_risk_model(tmp_path / "b", thresholds=CRISIS_HIGH), adapter=True
    )
    plain, tuned = RiskScorer.load(plain_folder), RiskScorer.load(tuned_folder)
    text = ["no one would miss me"]
    assert plain.probabilities(text)[0][CRISIS_LABEL] != pytest.approx(
        tuned.probabilities(text)[0][CRISIS_LABEL]
    )
    # The risk labels still read the untouched frozen encoder.
    assert plain.probabilities(text)[0]["suicidal"] == pytest.approx(tuned.probabilities(text)[0]["suicidal"])


def test_hugging_face_risk_model_loads_the_crisis_heads_own_encoder(tmp_path):
    pooled = build_tiny_pooled_risk_model(tmp_path / "pooled")
    folder = build_tiny_risk_model(tmp_path / "hf", thresholds=CRISIS_HIGH)
    add_tiny_crisis_head(folder, forced=0.7, base_model=str((pooled / "base").resolve()))
    [result] = RiskScorer.load(folder).predict(["hello there"])
    assert result.probabilities[CRISIS_LABEL] == pytest.approx(0.7, abs=1e-4)
    assert result.tier == RiskTier.HIGH


def test_folder_without_crisis_head_keeps_its_labels(tmp_path):
    scorer = RiskScorer.load(build_tiny_pooled_risk_model(tmp_path / "risk"))
    assert scorer.crisis is None
    assert CRISIS_LABEL not in scorer.probabilities(["hello"])[0]


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "magic"},
        {"format": "peercare-crisis-head/9"},
        {"temperature": 0},
    ],
)
def test_bad_crisis_head_config_is_a_clear_load_error(tmp_path, change):
    folder = add_tiny_crisis_head(build_tiny_pooled_risk_model(tmp_path / "risk"), forced=0.5)
    raw = json.loads((folder / CONFIG_FILE).read_text())
    raw["config"].update(change)
    (folder / CONFIG_FILE).write_text(json.dumps(raw))
    with pytest.raises(ModelLoadError, match="crisis head"):
        RiskScorer.load(folder)


def test_crisis_head_save_and_load_are_mirrors(tmp_path):
    folder = add_tiny_crisis_head(build_tiny_pooled_risk_model(tmp_path / "risk"), chunk_window=3, seed=4)
    head = CrisisHead.load(folder)
    assert head is not None and head.config.chunk_window == 3
    head.save(tmp_path / "copy")
    again = CrisisHead.load(tmp_path / "copy")
    assert again is not None and again.config == head.config
    np.testing.assert_array_equal(again.tensors["weight"], head.tensors["weight"])


def test_prototypes_are_stored_in_half_precision_and_score_as_before(tmp_path):
    from safetensors.numpy import load_file

    from inference.risk.crisis import WEIGHTS_FILE, CrisisHeadConfig

    rng = np.random.default_rng(3)
    rows = rng.normal(size=(400, 32)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    tensors = {
        "positive": rows[:150],
        "negative": rows[150:],
        "platt": np.array([6.0, -0.5], np.float32),
        "weight": rng.normal(size=96).astype(np.float32),
        "bias": np.array([0.1], np.float32),
    }
    head = CrisisHead(CrisisHeadConfig(kind="ensemble", layers=(1, 2, 3)), tensors)
    head.save(tmp_path)
    stored = load_file(tmp_path / WEIGHTS_FILE)
    assert stored["positive"].dtype == np.float16 and stored["negative"].dtype == np.float16
    assert stored["weight"].dtype == np.float32
    loaded = CrisisHead.load(tmp_path)
    assert loaded is not None and loaded.tensors["positive"].dtype == np.float32
    probe = rng.normal(size=(50, 96)).astype(np.float32)
    probe /= np.linalg.norm(probe, axis=1, keepdims=True)
    np.testing.assert_allclose(loaded.logits(probe), head.logits(probe), atol=1e-2)
