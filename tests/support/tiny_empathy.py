"""Tiny random empathy bi-encoders for tests, saved in all three checkpoint formats.

The models are real (2-layer, hidden-32 BERT/RoBERTa encoders over a 3.5k-token WordPiece vocabulary cut
from the offline MiniLM one), so loading, key mapping, spans and batching run for real in milliseconds.
``force_level`` and ``all_rationale`` set head biases so a model deterministically predicts one level and
marks every reply token as rationale: end-to-end tests can then expect exact coaching.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from inference.empathy.checkpoints import save_pretrained
from inference.empathy.lora import add_lora, lora_target_paths
from inference.empathy.model import BiEncoderConfig, EmpathyBiEncoder
from inference.empathy.tokenizer_files import wordpiece_tokenizer
from inference.sources import minilm_path
from inference.types import Mechanism

log = logging.getLogger(__name__)

HIDDEN = 32
# MiniLM's vocab.txt: specials and [unused] first, then single characters and ## pieces, then words by
# frequency from line 1996. Keeping 1,500 words makes ordinary English tokenise into real pieces.
_VOCAB_LINES = 1996 + 1500
_tokenizer_cache: dict[str, Any] = {}


def tiny_tokenizer():
    """A fast uncased WordPiece tokenizer with a 3.5k vocabulary (built once per process)."""
    if "tokenizer" not in _tokenizer_cache:
        import tempfile

        lines = (minilm_path() / "vocab.txt").read_text(encoding="utf-8").splitlines()[:_VOCAB_LINES]
        with tempfile.TemporaryDirectory() as folder:
            vocab = Path(folder) / "vocab.txt"
            vocab.write_text("\n".join(lines) + "\n", encoding="utf-8")
            # Not BertTokenizerFast(vocab_file=...): transformers 5 ignores that argument (a 5-token vocabulary).
            _tokenizer_cache["tokenizer"] = wordpiece_tokenizer(vocab, lowercase=True)
    return _tokenizer_cache["tokenizer"]


# Made-up English for a small byte-level BPE vocabulary (RoBERTa's format: vocab.json + merges.txt).
_BPE_CORPUS = (
    "That sounds exhausting. Do you want to talk about what's worrying you most?",
    "I can't sleep and I'm anxious about my exam tomorrow.",
    "I hear you, that sounds really hard. I'm so sorry you are going through this.",
    "My dog died last week and the house feels empty. Have you tried writing your thoughts down?",
)
BPE_VOCABULARY = 1500


def save_bpe_vocabulary(folder: Path) -> Path:
    """RoBERTa-style ``vocab.json`` + ``merges.txt`` (specials <s> <pad> </s> <unk> first, as in roberta-base)."""
    from tokenizers import ByteLevelBPETokenizer

    folder.mkdir(parents=True, exist_ok=True)
    trainer = ByteLevelBPETokenizer()
    # MiniLM's common words (as in tiny_tokenizer) give enough merges for a vocabulary of realistic shape.
    words = (minilm_path() / "vocab.txt").read_text(encoding="utf-8").splitlines()[1996:_VOCAB_LINES]
    trainer.train_from_iterator(
        [*_BPE_CORPUS * 20, *(" ".join(words[i : i + 12]) for i in range(0, len(words), 12))],
        vocab_size=BPE_VOCABULARY,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    trainer.save_model(str(folder))
    return folder


def tiny_encoder(*, seed: int, model_type: str = "bert"):
    """A random 2-layer hidden-32 encoder (BertModel or RobertaModel) over the tiny vocabulary."""
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(seed)
    config = AutoConfig.for_model(
        model_type,
        vocab_size=_VOCAB_LINES,
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=80,
        type_vocab_size=1 if model_type == "roberta" else 2,
        pad_token_id=0,
    )
    encoder = AutoModel.from_config(config, add_pooling_layer=False)
    return encoder.eval()


def build_tiny_bi_encoder(
    mechanism: Mechanism | str = Mechanism.EMOTIONAL_REACTIONS,
    *,
    seed: int = 0,
    seeker_seed: int = 1234,
    model_type: str = "bert",
    seeker_mask: bool = True,
    lowercase: bool = False,
    force_level: int | None = None,
    all_rationale: bool = False,
    lora_rank: int | None = None,
    base: Any = None,
) -> EmpathyBiEncoder:
    """One random bi-encoder. Equal ``seeker_seed`` gives identical seeker encoders (shared at load).

    ``base``: an encoder to start both sides from (a copy each), as PeerCare's own training does;
    ``lora_rank`` then adds random (non-zero) LoRA adapters to the responder.
    """
    import copy

    code = Mechanism(mechanism).value
    if base is not None:
        seeker, responder = copy.deepcopy(base), copy.deepcopy(base)
    else:
        seeker = tiny_encoder(seed=seeker_seed, model_type=model_type)
        responder = tiny_encoder(seed=seed + 1, model_type=model_type)
    config = BiEncoderConfig(
        mechanism=code, hidden_size=HIDDEN, max_length=64, seeker_mask=seeker_mask, lowercase=lowercase
    )
    torch.manual_seed(seed)
    model = EmpathyBiEncoder(config, seeker, responder)
    with torch.no_grad():
        # Random heads with std 0.02 give near-uniform outputs; larger weights make levels differ by input.
        for linear in (model.empathy_classifier.out_proj, model.rationale_classifier):
            linear.weight.normal_(0.0, 1.0)
        if lora_rank is not None:
            add_lora(responder, lora_target_paths(responder), rank=lora_rank, alpha=2.0 * lora_rank)
            for name, parameter in responder.named_parameters():
                if "lora_" in name:
                    parameter.normal_(0.0, 0.2)
        set_forced_outputs(model, force_level=force_level, all_rationale=all_rationale)
    return model.eval()


def set_forced_outputs(model: EmpathyBiEncoder, *, force_level: int | None, all_rationale: bool) -> None:
    """Make the level head always answer ``force_level`` and/or the rationale head mark every token."""
    with torch.no_grad():
        if force_level is not None:
            head = model.empathy_classifier.out_proj
            head.weight.zero_()
            head.bias.fill_(-8.0)
            head.bias[int(force_level)] = 8.0
        if all_rationale:
            model.rationale_classifier.weight.zero_()
            model.rationale_classifier.bias.copy_(torch.tensor([-8.0, 8.0]))


# -- the three formats ---------------------------------------------------------------------------------


def save_peercare(model: EmpathyBiEncoder, folder: Path, *, base_encoder: str | None = None) -> Path:
    """PeerCare's own format (fp32 so reloaded outputs are bit-comparable)."""
    return save_pretrained(
        model, folder, tokenizer=tiny_tokenizer(), base_encoder=base_encoder, weights_dtype=torch.float32
    )


def upstream_state_dict(model: EmpathyBiEncoder, *, wrapper: str = "roberta") -> dict[str, torch.Tensor]:
    """Keys exactly as upstream's train.py saves them (seeker_encoder.roberta.*, attn.*, ...), pooler included."""
    state: dict[str, torch.Tensor] = {}
    inner = f"{wrapper}." if wrapper else ""
    for side in ("seeker_encoder", "responder_encoder"):
        encoder = getattr(model, side)
        for key, value in encoder.state_dict().items():
            state[f"{side}.{inner}{key}"] = value.clone()
        hidden = encoder.config.hidden_size
        # Upstream encoders carry an (unused) pooler; a loader must drop it.
        state[f"{side}.{inner}pooler.dense.weight"] = torch.zeros(hidden, hidden)
        state[f"{side}.{inner}pooler.dense.bias"] = torch.zeros(hidden)
    for key, value in model.state_dict().items():
        if not key.startswith(("seeker_encoder.", "responder_encoder.")):
            state[key] = value.clone()
    return state


def save_upstream(
    model: EmpathyBiEncoder,
    folder: Path,
    *,
    with_encoder_config: bool = True,
    with_tokenizer: bool = True,
    name: str = "model_ER.pt",
) -> Path:
    """``torch.save(state_dict)`` as upstream's train.py, with the tokenizer (and encoder config) beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(upstream_state_dict(model), folder / name)
    if with_tokenizer:
        tiny_tokenizer().save_pretrained(folder)
    if with_encoder_config:
        model.responder_encoder.config.to_json_file(folder / "config.json")
    return folder / name


def save_hf_port(
    model: EmpathyBiEncoder, folder: Path, *, prefix: str = "model.", wrapper: str = "roberta"
) -> Path:
    """A Hugging Face port as published for trust_remote_code: config.json + prefixed model.safetensors."""
    folder.mkdir(parents=True, exist_ok=True)
    state = upstream_state_dict(model, wrapper=wrapper)
    save_file({f"{prefix}{k}": v.contiguous() for k, v in state.items()}, folder / "model.safetensors")
    config = {
        "architectures": ["BiEncoderAttentionWithRationaleClassification"],
        "auto_map": {"AutoModel": "modeling_empathy.BiEncoderAttentionWithRationaleClassification"},
        "model_type": "empathy_bi_encoder",
        "base_config": model.responder_encoder.config.to_dict(),
        "max_length": model.config.max_length,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    tiny_tokenizer().save_pretrained(folder)
    return folder


def save_tiny_base(folder: Path, *, seed: int = 99) -> tuple[Any, Path]:
    """A tiny base encoder saved like a Hugging Face model folder (for adapters-only PeerCare models)."""
    encoder = tiny_encoder(seed=seed)
    encoder.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return encoder, folder


def build_tiny_empathy_models(
    folder: Path,
    *,
    force_levels: Mapping[Mechanism | str, int] | int | None = None,
    all_rationale: bool = False,
    seed: int = 0,
) -> dict[Mechanism, Path]:
    """Three tiny models (ER/IP/EX) in PeerCare's format, sharing one seeker encoder.

    ``force_levels``: one level for all three, or a level per mechanism (others stay random).
    """
    paths = {}
    for offset, mechanism in enumerate(Mechanism):
        if isinstance(force_levels, int):
            level = force_levels
        elif force_levels is None:
            level = None
        else:
            by_code = {Mechanism(k): v for k, v in force_levels.items()}
            level = by_code.get(mechanism)
        model = build_tiny_bi_encoder(
            mechanism, seed=seed + 10 * offset, force_level=level, all_rationale=all_rationale
        )
        paths[mechanism] = save_peercare(model, Path(folder) / f"empathy-{mechanism.value}")
    return paths


def build_tiny_multitask(folder: Path, *, seed: int = 0) -> Path:
    """A tiny multi-task model (random heads, a rank-2 adapter on the top layer) over a tiny base saved beside it."""
    from inference.contrastive import LoraShape, lora_copy
    from inference.empathy.model import BiEncoderConfig
    from inference.empathy.multitask import MultiTaskBiEncoder, save_multitask

    base, base_path = save_tiny_base(Path(folder) / "base", seed=99 + seed)
    torch.manual_seed(seed)
    responder = lora_copy(base, LoraShape(rank=2, alpha=4, dropout=0.0, blocks=(1,)))
    configs = {m.value: BiEncoderConfig(mechanism=m.value, hidden_size=HIDDEN) for m in Mechanism}
    model = MultiTaskBiEncoder(configs, None, responder.get_base_model())
    out = Path(folder) / "multitask"
    return save_multitask(model, responder, out, base_encoder=str(base_path.resolve()), training_sp_ids=set())
