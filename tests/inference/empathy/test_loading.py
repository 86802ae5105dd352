"""Loading the three checkpoint formats into the native bi-encoder: same weights, same outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from inference.empathy.checkpoints import load_bi_encoder, map_upstream_keys
from inference.empathy.scorer import EmpathyScorer
from inference.errors import ModelLoadError
from inference.types import Mechanism
from tests.support.tiny_empathy import (
    build_tiny_bi_encoder,
    build_tiny_empathy_models,
    save_hf_port,
    save_peercare,
    save_tiny_base,
    save_upstream,
    tiny_tokenizer,
    upstream_state_dict,
)

ER, IP, EX = Mechanism


def reference_probabilities(
    model, seeker: str, reply: str, *, full_seeker: bool, lowercase: bool
) -> torch.Tensor:
    """Upstream's forward written out by hand: seeker padded to 64 without a cross-attention mask."""
    tokenizer = tiny_tokenizer()
    if lowercase:
        seeker, reply = seeker.lower(), reply.lower()
    s = tokenizer(
        [seeker],
        max_length=64,
        truncation=True,
        padding="max_length" if full_seeker else False,
        return_tensors="pt",
    )
    r = tokenizer([reply], max_length=64, truncation=True, return_tensors="pt")
    with torch.no_grad():
        sp = model.seeker_encoder(
            input_ids=s["input_ids"], attention_mask=s["attention_mask"]
        ).last_hidden_state
        rp = model.responder_encoder(
            input_ids=r["input_ids"], attention_mask=r["attention_mask"]
        ).last_hidden_state
        mixed = rp + model.attn(rp, sp, None)
        return torch.softmax(model.empathy_classifier(mixed[:, 0, :]), dim=-1)[0]


def scorer_for(paths: dict[Mechanism, Path]) -> EmpathyScorer:
    return EmpathyScorer.load(paths)


def probabilities(scorer: EmpathyScorer, seekers, replies, mechanism=ER) -> torch.Tensor:
    results = scorer.score_pairs(seekers, replies)
    return torch.tensor([r.by_mechanism()[mechanism].probabilities for r in results])


def test_peercare_format_round_trip_gives_identical_outputs(tmp_path, seekers, replies) -> None:
    paths = build_tiny_empathy_models(tmp_path / "a")
    first = probabilities(scorer_for(paths), seekers, replies)
    # Load, save again, load again: nothing may drift.
    model = load_bi_encoder(paths[ER], mechanism="ER").model
    again = dict(paths)
    again[ER] = save_peercare(model, tmp_path / "b" / "empathy-ER")
    second = probabilities(scorer_for(again), seekers, replies)
    assert torch.equal(first, second)


def test_upstream_torch_save_checkpoint_matches_upstream_forward(tmp_path, seekers, replies) -> None:
    model = build_tiny_bi_encoder("ER", model_type="roberta", seeker_mask=False, lowercase=True)
    checkpoint = save_upstream(model, tmp_path / "upstream")
    loaded = load_bi_encoder(checkpoint, mechanism="ER")
    assert loaded.source_format == "upstream"
    assert not loaded.model.config.seeker_mask and loaded.model.config.lowercase
    scorer = scorer_for({ER: checkpoint, IP: checkpoint, EX: checkpoint})
    got = probabilities(scorer, seekers, replies)
    for i, (seeker, reply) in enumerate(zip(seekers, replies, strict=True)):
        expected = reference_probabilities(model, seeker, reply, full_seeker=True, lowercase=True)
        torch.testing.assert_close(got[i], expected, atol=1e-5, rtol=1e-5)


def test_upstream_checkpoint_file_path_loads_like_its_folder(tmp_path, seekers, replies) -> None:
    model = build_tiny_bi_encoder("IP", model_type="roberta", seeker_mask=False, lowercase=True)
    checkpoint = save_upstream(model, tmp_path / "upstream")
    by_file = load_bi_encoder(checkpoint, mechanism="IP").model.state_dict()
    by_folder = load_bi_encoder(checkpoint.parent, mechanism="IP").model.state_dict()
    assert by_file.keys() == by_folder.keys()
    assert all(torch.equal(by_file[k], by_folder[k]) for k in by_file)


@pytest.mark.parametrize(("prefix", "wrapper"), [("model.", "roberta"), ("bi_encoder.", ""), ("", "roberta")])
def test_hf_port_loads_by_key_mapping_with_any_outer_prefix(tmp_path, prefix, wrapper) -> None:
    model = build_tiny_bi_encoder("EX", model_type="roberta", seeker_mask=False, lowercase=True)
    folder = save_hf_port(model, tmp_path / "port", prefix=prefix, wrapper=wrapper)
    loaded = load_bi_encoder(folder, mechanism="EX")
    assert loaded.source_format == "hf-port"
    reference = model.state_dict()
    for key, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, reference[key], atol=0, rtol=0)


def test_key_mapping_strips_prefix_wrapper_and_pooler() -> None:
    model = build_tiny_bi_encoder("ER", model_type="roberta")
    state = {f"outer.{k}": v for k, v in upstream_state_dict(model).items()}
    seeker, responder, heads, wrapper = map_upstream_keys(state)
    assert wrapper == "roberta"
    assert "embeddings.word_embeddings.weight" in seeker
    assert not any(k.startswith("pooler.") for k in (*seeker, *responder))
    assert set(heads) >= {
        "attn.q_linear.weight",
        "empathy_classifier.out_proj.bias",
        "rationale_classifier.weight",
    }


def test_key_mapping_rejects_keys_without_the_shared_prefix() -> None:
    model = build_tiny_bi_encoder("ER", model_type="roberta")
    state = {f"model.{k}": v for k, v in upstream_state_dict(model).items()}
    state["other.attn.q_linear.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="outer prefix"):
        map_upstream_keys(state)


def test_checkpoint_missing_a_head_fails_with_the_setting_named(tmp_path) -> None:
    paths = build_tiny_empathy_models(tmp_path / "good")
    model = build_tiny_bi_encoder("IP", model_type="roberta", seeker_mask=False)
    folder = save_hf_port(model, tmp_path / "port")
    weights = load_file(folder / "model.safetensors")
    del weights["model.empathy_classifier.out_proj.weight"]
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(ModelLoadError, match=r"empathy_classifier\.out_proj\.weight.*EMPATHY_IP_MODEL"):
        EmpathyScorer.load({**paths, IP: folder})


def test_adapter_only_model_stores_no_encoder_and_loads_against_its_base(tmp_path, seekers, replies) -> None:
    base, base_folder = save_tiny_base(tmp_path / "base")
    model = build_tiny_bi_encoder("ER", base=base, lora_rank=4)
    # Trained adapters are peft's (issue 14); the checkpoint format and its merge at load are PeerCare's.
    assert any(type(m).__module__.startswith("peft.") for m in model.responder_encoder.modules())
    expected = probabilities_of_model(model, seekers, replies)
    folder = save_peercare(model, tmp_path / "adapters", base_encoder=str(base_folder))
    keys = set(load_file(folder / "model.safetensors"))
    assert not any(k.startswith(("seeker_encoder.", "responder_encoder.")) for k in keys)
    assert any(k.startswith("responder_lora.") for k in keys)
    loaded = load_bi_encoder(folder, mechanism="ER")
    got = probabilities_of_model(loaded.model, seekers, replies)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def probabilities_of_model(model, seekers, replies) -> torch.Tensor:
    return torch.stack(
        [reference_probabilities_masked(model, s, r) for s, r in zip(seekers, replies, strict=True)]
    )


def reference_probabilities_masked(model, seeker: str, reply: str) -> torch.Tensor:
    tokenizer = tiny_tokenizer()
    s = tokenizer([seeker], max_length=64, truncation=True, return_tensors="pt")
    r = tokenizer([reply], max_length=64, truncation=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        states = model.encode_seeker(s["input_ids"], s["attention_mask"])
        logits, _ = model.score(states, s["attention_mask"], r["input_ids"], r["attention_mask"])
    return torch.softmax(logits, dim=-1)[0]


def test_identical_seeker_encoders_are_shared(tmp_path) -> None:
    scorer = scorer_for(build_tiny_empathy_models(tmp_path))
    assert scorer.shares_seeker_encoder
    assert len(scorer.seeker_encoders) == 1


def test_different_seeker_encoders_are_kept_one_each(tmp_path, seekers, replies) -> None:
    paths = build_tiny_empathy_models(tmp_path / "shared")
    other = build_tiny_bi_encoder("IP", seed=5, seeker_seed=777)
    paths[IP] = save_peercare(other, tmp_path / "own-seeker" / "empathy-IP")
    scorer = scorer_for(paths)
    assert not scorer.shares_seeker_encoder
    assert len(scorer.seeker_encoders) == 3
    got = probabilities(scorer, seekers, replies, mechanism=IP)
    for i, (seeker, reply) in enumerate(zip(seekers, replies, strict=True)):
        torch.testing.assert_close(
            got[i], reference_probabilities_masked(other, seeker, reply), atol=1e-5, rtol=1e-4
        )


def test_model_saved_for_another_mechanism_is_refused(tmp_path) -> None:
    paths = build_tiny_empathy_models(tmp_path)
    with pytest.raises(ModelLoadError, match="EMPATHY_ER_MODEL"):
        EmpathyScorer.load({ER: paths[IP], IP: paths[IP], EX: paths[EX]})


def test_missing_model_folder_names_the_setting(tmp_path) -> None:
    paths = build_tiny_empathy_models(tmp_path)
    paths[EX] = tmp_path / "nowhere"
    with pytest.raises(ModelLoadError, match="EMPATHY_EX_MODEL"):
        EmpathyScorer.load(paths)


def test_peercare_config_records_the_format(tmp_path) -> None:
    paths = build_tiny_empathy_models(tmp_path)
    config = json.loads((paths[ER] / "config.json").read_text())
    assert config["format"] == "peercare-empathy-bi-encoder"
    assert config["bi_encoder"]["seeker_mask"] is True


def test_adapter_models_on_one_base_share_it_and_load_in_another_dtype(tmp_path, seekers, replies) -> None:
    base, base_folder = save_tiny_base(tmp_path / "base")
    paths = {
        m: save_peercare(
            build_tiny_bi_encoder(m, seed=i, base=base, lora_rank=4),
            tmp_path / m.value,
            base_encoder=str(base_folder),
        )
        for i, m in enumerate(Mechanism)
    }
    full = EmpathyScorer.load(paths)
    half = EmpathyScorer.load(paths, dtype=torch.bfloat16)
    assert full.shares_seeker_encoder and half.shares_seeker_encoder
    for mechanism in Mechanism:
        torch.testing.assert_close(
            probabilities(half, seekers, replies, mechanism),
            probabilities(full, seekers, replies, mechanism),
            atol=0.05,
            rtol=0,
        )
