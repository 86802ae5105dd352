"""The multi-task bi-encoder end to end on a tiny encoder and made-up rows: joining the CSVs, training, the
folder it writes, loading its three views, and the scorer running its responder once per batch."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from bot.cli import main
from inference.empathy.checkpoints import load_bi_encoder, read_training_sp_ids
from inference.empathy.multitask_training import FILES, MISSING, encode_joint, joint_rows
from inference.empathy.scorer import EmpathyScorer
from inference.types import Mechanism
from tests.inference.empathy.test_training import PAIRS, TINY_RECIPE
from tests.support.tiny_empathy import save_tiny_base, tiny_tokenizer


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """The made-up pairs in three CSVs. IP's copy has doubled spaces (the real files differ like that) and
    EX lacks the last pair."""
    folder = tmp_path_factory.mktemp("empathy-data")
    for mechanism, name in FILES.items():
        with (folder / name).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sp_id", "rp_id", "seeker_post", "response_post", "level", "rationales"])
            pairs = PAIRS[:-1] if mechanism == "EX" else PAIRS
            for i, (seeker, response, level, rationales) in enumerate(pairs):
                if mechanism == "IP":
                    response = response.replace(" ", "  ", 1)
                writer.writerow([f"s{i // 2}", f"r{i}", seeker, response, (level + i) % 3, rationales])
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir) -> Path:
    root = tmp_path_factory.mktemp("multitask")
    _, base = save_tiny_base(root / "base")
    out = root / "model"
    code = main(_training_command(data_dir, base, out))
    assert code == 0
    return out


def _training_command(data_dir: Path, base: Path, out: Path) -> list[str]:
    return [
        "train",
        "empathy-multitask",
        "--data-dir",
        str(data_dir),
        "--base",
        str(base),
        "--out",
        str(out),
        *TINY_RECIPE,
    ]


def test_the_three_csvs_join_by_pair_whatever_their_whitespace(data_dir) -> None:
    rows = joint_rows(data_dir)
    assert len(rows) == len(PAIRS)
    last = rows[-1]
    assert set(last.levels) == {"ER", "IP"}  # EX lacks it
    assert all(set(row.levels) == {"ER", "IP", "EX"} for row in rows[:-1])
    assert "  " not in "".join(row.response_post for row in rows)


def test_a_pair_without_a_mechanisms_label_adds_no_loss_for_it(data_dir) -> None:
    from inference.empathy.model import BiEncoderConfig

    rows = joint_rows(data_dir)
    encoded = encode_joint(rows, tiny_tokenizer(), BiEncoderConfig(mechanism="ER", hidden_size=32), FILES)
    assert encoded["EX"][-1].level == MISSING
    assert set(encoded["EX"][-1].rationale_labels) == {MISSING}
    assert encoded["ER"][-1].level != MISSING
    assert any(label == 1 for label in encoded["ER"][0].rationale_labels)


def test_training_writes_a_small_folder_with_one_adapter_and_three_head_sets(trained) -> None:
    from safetensors.torch import load_file

    config = json.loads((trained / "config.json").read_text())
    assert config["format"] == "peercare-empathy-multitask"
    assert set(config["mechanisms"]) == {"ER", "IP", "EX"}
    assert (trained / "responder_adapter" / "adapter_config.json").is_file()
    heads = load_file(trained / "heads.safetensors")
    assert {name.split(".")[0] for name in heads} == {"ER", "IP", "EX"}
    assert all(value.dtype == torch.float16 for value in heads.values())
    assert not any("responder_encoder" in name or "seeker_encoder" in name for name in heads)
    assert read_training_sp_ids(trained)  # eval leaves the training posts out
    card = (trained / "README.md").read_text()
    assert "one responder pass" in card and "| IP |" in card and "Licence" in card
    report = json.loads((trained / "training_report.json").read_text())
    for mechanism in ("ER", "IP", "EX"):
        assert report["dev"][mechanism]["macro_f1"] == pytest.approx(
            report["dev_as_saved"][mechanism]["macro_f1"], abs=0.05
        )


def test_the_three_views_share_one_responder_and_the_scorer_runs_it_once(trained) -> None:
    scorer = EmpathyScorer.load({m: trained for m in Mechanism})
    responders = {id(scorer.responders[m].responder_encoder) for m in Mechanism}
    assert len(responders) == 1
    assert scorer.shares_seeker_encoder
    calls = []
    encoder = scorer.responders[Mechanism.EMOTIONAL_REACTIONS].responder_encoder
    handle = encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        results = scorer.score_pairs(["I lost my job today."] * 2, ["I'm so sorry.", "Update your resume."])
    finally:
        handle.remove()
    assert len(calls) == 1
    # The same numbers as three separately loaded copies, each running its own responder pass.
    separate = {m: load_bi_encoder(trained, mechanism=m.value) for m in Mechanism}
    assert len({id(separate[m].model.responder_encoder) for m in Mechanism}) == 3
    apart = EmpathyScorer(separate, shares_seeker_encoder=False)
    expected = apart.score_pairs(["I lost my job today."] * 2, ["I'm so sorry.", "Update your resume."])
    for got, want in zip(results, expected, strict=True):
        for mechanism, score in got.by_mechanism().items():
            assert score.probabilities == pytest.approx(
                want.by_mechanism()[mechanism].probabilities, abs=1e-5
            )


def test_single_mechanism_models_still_take_a_pass_each(tmp_path) -> None:
    from tests.support.tiny_empathy import build_tiny_empathy_models

    scorer = EmpathyScorer.load(build_tiny_empathy_models(tmp_path))
    calls = []
    handles = [
        scorer.responders[m].responder_encoder.register_forward_hook(lambda *_: calls.append(1))
        for m in Mechanism
    ]
    try:
        scorer.score_pairs(["I lost my job today."], ["I'm so sorry."])
    finally:
        for handle in handles:
            handle.remove()
    assert len(calls) == 3


def test_a_multitask_folder_evaluates_per_mechanism(trained, data_dir, capsys) -> None:
    code = main(
        [
            "eval",
            "empathy",
            "--mechanism",
            "IP",
            "--data",
            str(data_dir / FILES["IP"]),
            "--model",
            str(trained),
            "--device",
            "cpu",
            "--json",
        ]
    )
    assert code == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 < scores["n"] < len(PAIRS)  # the training posts are left out


def test_a_folder_without_the_asked_mechanism_is_a_clear_load_error(trained, tmp_path) -> None:
    import shutil

    from inference.errors import ModelLoadError

    copy = tmp_path / "model"
    shutil.copytree(trained, copy)
    config = json.loads((copy / "config.json").read_text())
    del config["mechanisms"]["EX"]
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="no EX head"):
        load_bi_encoder(copy, mechanism="EX")


def test_a_pair_listed_twice_keeps_both_copies(tmp_path) -> None:
    for name in FILES.values():
        with (tmp_path / name).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sp_id", "rp_id", "seeker_post", "response_post", "level", "rationales"])
            writer.writerow(["s1", "r1", "I feel lonely.", "I'm sad to hear that.", 1, ""])
            writer.writerow(["s1", "r1", "I feel lonely.", "I'm sad to hear that.", 2, ""])
    rows = joint_rows(tmp_path)
    assert [row.levels["IP"] for row in rows] == [1, 2]


@pytest.mark.parametrize("option", [("--lora-rank", "0"), ("--train-top-layers", "0")])
def test_a_multitask_run_without_an_adapter_is_a_clear_error(tmp_path, data_dir, capsys, option) -> None:
    _, base = save_tiny_base(tmp_path / "base")
    assert main([*_training_command(data_dir, base, tmp_path / "m"), *option]) == 2
    assert "adapter" in capsys.readouterr().err
