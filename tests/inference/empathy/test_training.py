"""A tiny end-to-end run of `peercare train empathy` and `peercare eval empathy` on made-up rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from bot.cli import main
from inference.empathy.checkpoints import load_bi_encoder, read_training_sp_ids
from tests.support.tiny_empathy import save_tiny_base

# Made-up pairs (not dataset text): level 2 replies name a feeling, level 0 ones give advice.
PAIRS = [
    ("I lost my job today.", "I'm so sorry, that must feel awful.", 2, "so sorry|feel awful"),
    ("I lost my job today.", "Update your resume tonight.", 0, ""),
    ("My cat is sick.", "That sounds so scary, I'm sorry.", 2, "so scary"),
    ("My cat is sick.", "Call a vet.", 0, ""),
    ("I feel lonely.", "I'm sad to hear that.", 1, "sad to hear"),
    ("I feel lonely.", "Join a club.", 0, ""),
    ("Exams are killing me.", "That sounds really stressful, I feel for you.", 2, "I feel for you"),
    ("Exams are killing me.", "Study more.", 0, ""),
    ("Nobody calls me.", "That hurts, I'm sorry.", 2, "That hurts"),
    ("Nobody calls me.", "Call them first.", 0, ""),
    ("I can't sleep.", "Oh no, that's rough.", 1, "that's rough"),
    ("I can't sleep.", "Try melatonin.", 0, ""),
]


# A run small enough for a unit test: one epoch, rank-2 adapters on the tiny encoder's top layer, no cache.
TINY_RECIPE = (
    "--epochs",
    "1",
    "--batch-size",
    "4",
    "--lora-rank",
    "2",
    "--lora-alpha",
    "4",
    "--train-top-layers",
    "1",
    "--dev-fraction",
    "0.34",
    "--cache-dir",
    "",
    "--device",
    "cpu",
)


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sp_id", "rp_id", "seeker_post", "response_post", "level", "rationales"])
        for i, (seeker, response, level, rationales) in enumerate(PAIRS):
            writer.writerow([f"s{i // 2}", f"r{i}", seeker, response, level, rationales])
    return path


def test_training_saves_a_model_that_loads_and_evaluates_on_unseen_seekers(
    tmp_path, data_file, capsys
) -> None:
    _, base = save_tiny_base(tmp_path / "base")
    out = tmp_path / "model"
    code = main(
        [
            "train",
            "empathy",
            "--mechanism",
            "IP",
            "--data",
            str(data_file),
            "--base",
            str(base),
            "--out",
            str(out),
            *TINY_RECIPE,
            "--heads-only-epochs",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0
    report = json.loads((out / "training_report.json").read_text())
    assert set(report["dev"]) >= {
        "model",
        "majority",
        "tfidf_logreg",
        "frozen_encoder_heads_only",
        "model_as_saved",
    }
    trained = read_training_sp_ids(out)
    assert trained and trained < {f"s{i}" for i in range(6)}

    loaded = load_bi_encoder(out, mechanism="IP")
    assert loaded.source_format == "peercare" and loaded.model.config.seeker_mask

    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                "empathy",
                "--mechanism",
                "IP",
                "--data",
                str(data_file),
                "--model",
                str(out),
                "--json",
                "--device",
                "cpu",
                "--plot",
                str(tmp_path / "cm.png"),
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    scores = json.loads(lines[-1])
    assert {"accuracy", "macro_f1", "iou_f1", "token_f1", "n"} <= set(scores)
    assert scores["n"] == len(PAIRS) - 2 * len(trained)
    assert any(line.startswith(f"left out {2 * len(trained)} of {len(PAIRS)} rows") for line in lines)
    assert (tmp_path / "cm.png").read_bytes().startswith(b"\x89PNG")
    assert scores == report["dev"]["model_as_saved"] | {"n": scores["n"]}
