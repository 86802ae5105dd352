"""``peercare train risk`` end to end on a tiny encoder and a small made-up copy of the shared data's layout.

Proves the training code paths the shipped model was made with (frozen head, then LoRA whose tuned encoder
answers only some labels) write folders that ``RiskScorer`` loads, and that the labels outside
``adapter_labels`` keep the frozen head exactly.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from inference.risk.model_folder import read_pooled_config
from inference.risk.scorer import RiskScorer
from inference.risk.train import TrainOptions, train_risk_model
from tests.support.tiny_risk import build_tiny_pooled_risk_model

ROWS_PER_SPLIT = 60
TEXTS = ["i cannot sleep and everything feels heavy", "we went hiking and it was lovely", "hello"]
_CALM = ("the weather was nice", "i cooked pasta tonight", "our team won the match", "the garden is green")
_HEAVY = (
    "i feel hopeless and alone",
    "i cannot cope anymore",
    "the pressure is crushing me",
    "i am so tired",
)


def _text(index: int, heavy: bool) -> str:
    words = _HEAVY if heavy else _CALM
    return f"{words[index % 4]} and {words[(index * 7 + 1) % 4]} number {index}"


def _write_made_up_data(root: Path) -> Path:
    """The shared folder's file layout and columns (see each SOURCE.md), with invented rows."""
    for folder in ("sdcnl", "dreaddit", "depseverity"):
        (root / folder).mkdir(parents=True)
    severity = []
    for split, sdcnl_name, dreaddit_name in (
        ("train", "training-set.csv", "dreaddit-train.csv"),
        ("test", "testing-set.csv", "dreaddit-test.csv"),
    ):
        offset = 0 if split == "train" else 10_000
        sdcnl = [
            {"orig_index": offset + i, "title": f"post {offset + i}", "selftext": _text(i, i % 2 == 0)}
            | {"is_suicide": i % 2}
            for i in range(ROWS_PER_SPLIT)
        ]
        pd.DataFrame(sdcnl).to_csv(root / "sdcnl" / sdcnl_name, index=False)
        dreaddit = [
            {"text": _text(offset + i + 1, i % 2 == 0), "label": 1 - i % 2, "post_id": f"p{offset + i}"}
            for i in range(ROWS_PER_SPLIT)
        ]
        pd.DataFrame(dreaddit).to_csv(root / "dreaddit" / dreaddit_name, index=False)
        severity += [
            {"text": row["text"], "label": "moderate" if i % 3 == 0 else "minimum"}
            for i, row in enumerate(dreaddit)
        ]
    pd.DataFrame(severity).to_csv(root / "depseverity" / "Reddit_depression_dataset.csv", index=False)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("risk-training")
    base = build_tiny_pooled_risk_model(root / "tiny") / "base"
    data = _write_made_up_data(root / "data")
    common = {
        "data_dir": data,
        "base_model": str(base),
        "layers": (1, 2),
        "window_tokens": 32,
        "overlap_tokens": 8,
        "threads": 1,
        "cache_dir": root / "cache",
        "lexical_labels": ("stress",),
    }
    frozen = root / "frozen"
    train_risk_model(TrainOptions(output=frozen, mode="head", epochs=1, lr_head=5e-3, **common))
    split = root / "split"
    train_risk_model(
        TrainOptions(
            output=split,
            mode="lora",
            epochs=1,
            batch_size=16,
            lora_blocks=(0, 1),
            lr_lora=5e-3,
            lr_head=5e-3,
            init_head=frozen,
            adapter_labels=("stress",),
            **common,
        )
    )
    return {"frozen": frozen, "split": split, "common": common, "root": root}


def test_head_mode_writes_a_calibrated_folder_the_scorer_loads(trained) -> None:
    folder = trained["frozen"]
    assert read_pooled_config(folder).adapter is None
    assert {"risk_calibration.json", "risk_lexical.json", "training.json"} <= {
        p.name for p in folder.iterdir()
    }
    scorer = RiskScorer.load(folder)
    assert set(scorer.temperature) == {"suicidal", "depression", "stress"}
    assert all(0.0 <= p <= 1.0 for row in scorer.probabilities(TEXTS) for p in row.values())


def test_adapter_labels_keep_the_frozen_head_for_every_other_label(trained) -> None:
    frozen, split = trained["frozen"], trained["split"]
    config = read_pooled_config(split)
    assert config.adapter_labels == ("stress",) and config.adapter == "adapter"
    assert (split / "risk_head.safetensors").read_bytes() == (frozen / "risk_head.safetensors").read_bytes()
    before, after = RiskScorer.load(frozen), RiskScorer.load(split)
    # Calibrated again on the same logits (give or take the head's fp16 storage): the same values.
    assert after.temperature["suicidal"] == pytest.approx(before.temperature["suicidal"], abs=0.01)
    moved = []
    for old, new in zip(before.probabilities(TEXTS), after.probabilities(TEXTS), strict=True):
        assert new["suicidal"] == pytest.approx(old["suicidal"], abs=2e-3)
        assert new["depression"] == pytest.approx(old["depression"], abs=2e-3)
        moved.append(_log_odds(new["stress"]) != pytest.approx(_log_odds(old["stress"]), abs=1e-3))
    # The tuned encoder answers stress: it moves (a text the word-level logit saturates may not).
    assert any(moved)


def _log_odds(probability: float) -> float:
    """Compare in logit space: a confident label's probability sits within 1e-4 of 0 or 1 either way."""
    probability = min(max(probability, 1e-15), 1 - 1e-15)  # float32 sigmoid can round to exactly 0 or 1
    return math.log(probability) - math.log1p(-probability)


def test_adapter_labels_without_a_head_to_keep_is_a_clear_error(trained) -> None:
    options = TrainOptions(
        output=trained["root"] / "refused", mode="lora", adapter_labels=("stress",), **trained["common"]
    )
    with pytest.raises(ValueError, match="--adapter-labels needs --init-head"):
        train_risk_model(options)
