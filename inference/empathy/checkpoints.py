"""Load empathy bi-encoders from the three formats (upstream torch.save, Hugging Face ports, PeerCare's own) and save PeerCare's.

No format runs code from the checkpoint: upstream files are read with ``torch.load(weights_only=True)``,
ports are mapped key by key into the native model, and ``trust_remote_code`` is never used.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from inference.empathy.lora import apply_saved_lora, lora_scale, lora_state
from inference.empathy.model import HEAD_PREFIXES, BiEncoderConfig, EmpathyBiEncoder
from inference.empathy.multitask import FORMAT_NAME as MULTITASK_FORMAT
from inference.empathy.tokenizer_files import check_tokenizer, tokenizer_from_files
from inference.errors import ModelLoadError
from inference.sources import resolve_source

log = logging.getLogger(__name__)

FORMAT_NAME = "peercare-empathy-bi-encoder"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TRAINING_IDS_FILE = "training_sp_ids.json"

ENCODER_PREFIXES = ("seeker_encoder.", "responder_encoder.")
# Top-level names inside a Hugging Face encoder; anything else in front of them is a wrapper (``roberta.``).
_ENCODER_ROOTS = frozenset({"embeddings", "encoder", "pooler"})
_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
_WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer_config.json")
# Upstream trained RoBERTa-base; a bare checkpoint without tokenizer files falls back to its tokenizer.
_UPSTREAM_TOKENIZER = "FacebookAI/roberta-base"


@dataclass
class LoadedBiEncoder:
    """A native bi-encoder ready to score, with the tokenizer it reads and where it came from."""

    model: EmpathyBiEncoder
    tokenizer: Any
    pad_id: int
    source_format: str  # "peercare", "peercare-multitask", "upstream" or "hf-port"
    source: Path


def load_bi_encoder(
    source: str | os.PathLike[str],
    *,
    mechanism: str,
    setting: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    base_cache: dict[Path, nn.Module] | None = None,
) -> LoadedBiEncoder:
    """Load one mechanism's bi-encoder from any of the three formats; errors name ``setting``."""
    path = resolve_source(source, setting=setting)
    try:
        found = folder_format(path)
        if found == MULTITASK_FORMAT:
            loaded = _load_multitask_view(path, mechanism=mechanism, setting=setting, base_cache=base_cache)
        elif found == FORMAT_NAME:
            loaded = _load_peercare(path, mechanism=mechanism, setting=setting, base_cache=base_cache)
        else:
            loaded = _load_mapped(path, mechanism=mechanism, setting=setting)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(
            f"could not load the {mechanism} empathy model from {path}: {type(exc).__name__}: {exc}",
            setting=setting,
        ) from exc
    if not getattr(loaded.tokenizer, "is_fast", False):
        raise ModelLoadError(
            f"the {mechanism} empathy model's tokenizer at {path} is not a fast tokenizer (character offsets "
            "for rationale spans need one)",
            setting=setting,
        )
    loaded.model.eval()
    loaded.model.to(device=device, dtype=dtype) if dtype is not None else loaded.model.to(device)
    return loaded


# -- PeerCare's own format ------------------------------------------------------------------------


def save_pretrained(
    model: EmpathyBiEncoder,
    folder: str | os.PathLike[str],
    *,
    tokenizer: Any = None,
    base_encoder: str | None = None,
    weights_dtype: torch.dtype = torch.float16,
    training_sp_ids: set[str] | None = None,
    lora_alpha: float | None = None,
) -> Path:
    """Write ``config.json`` + ``model.safetensors``.

    With ``base_encoder`` (a source such as "all-MiniLM-L6-v2"), only what differs from it is written:
    the heads, plus the responder's LoRA adapters (or its full weights if it was fully fine-tuned, nothing
    if it was frozen). Without it, both encoders and the tokenizer are written too.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, value in model.state_dict().items():
        if name.startswith(HEAD_PREFIXES):
            tensors[name] = value
    adapters = lora_state(model.responder_encoder)
    lora_info = None
    if adapters:
        if base_encoder is None:
            raise ValueError("LoRA adapters are saved relative to a base encoder: pass base_encoder")
        rank = next(iter(v for k, v in adapters.items() if k.endswith("lora_A"))).shape[0]
        scale = lora_scale(model.responder_encoder)
        lora_info = {
            "rank": int(rank),
            "alpha": float(lora_alpha if lora_alpha is not None else scale * rank),
        }
        tensors.update({f"responder_lora.{k}": v for k, v in adapters.items()})
    elif base_encoder is None or any(p.requires_grad for p in model.responder_encoder.parameters()):
        tensors.update({f"responder_encoder.{k}": v for k, v in model.responder_encoder.state_dict().items()})
    encoder_config = None
    if base_encoder is None:
        if model.seeker_encoder is None:
            raise ValueError("without a base encoder the seeker encoder must be saved too")
        tensors.update({f"seeker_encoder.{k}": v for k, v in model.seeker_encoder.state_dict().items()})
        encoder_config = model.responder_encoder.config.to_dict()
        if tokenizer is None:
            raise ValueError("without a base encoder the tokenizer must be saved too")
        tokenizer.save_pretrained(out)
    tensors = {
        k: v.detach().to("cpu", weights_dtype).contiguous()
        for k, v in tensors.items()
        if "position_ids" not in k
    }
    save_file(tensors, out / WEIGHTS_FILE)
    config = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "bi_encoder": model.config.to_dict(),
        "base_encoder": base_encoder,
        "encoder_config": encoder_config,
        "responder_lora": lora_info,
        "weights_dtype": str(weights_dtype).removeprefix("torch."),
    }
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if training_sp_ids is not None:
        (out / TRAINING_IDS_FILE).write_text(json.dumps({"sp_ids": sorted(training_sp_ids)}) + "\n")
    return out


def read_training_sp_ids(source: str | os.PathLike[str], *, setting: str | None = None) -> frozenset[str]:
    """The seeker-post ids a PeerCare model was trained on (empty when the folder does not list them)."""
    path = resolve_source(source, setting=setting)
    file = path / TRAINING_IDS_FILE if path.is_dir() else path.parent / TRAINING_IDS_FILE
    if not file.is_file():
        return frozenset()
    return frozenset(json.loads(file.read_text())["sp_ids"])


def folder_format(path: Path) -> str | None:
    """The ``format`` a PeerCare model folder's config.json declares; None for anything else."""
    config = path / CONFIG_FILE
    if not (path.is_dir() and config.is_file()):
        return None
    try:
        found = json.loads(config.read_text()).get("format")
    except (json.JSONDecodeError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def _load_peercare(
    path: Path, *, mechanism: str, setting: str | None, base_cache: dict[Path, nn.Module] | None
) -> LoadedBiEncoder:
    from transformers import AutoConfig, AutoModel

    config = json.loads((path / CONFIG_FILE).read_text())
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise ModelLoadError(
            f"{path} was written by a newer PeerCare (format {config['format_version']})", setting=setting
        )
    tensors = {k: v.float() for k, v in load_file(path / WEIGHTS_FILE).items()}
    bi_config = BiEncoderConfig.from_dict(config["bi_encoder"])
    _check_mechanism(bi_config.mechanism, mechanism, path, setting)
    base = config.get("base_encoder")
    if base:
        base_path = resolve_source(base, setting=setting)
        seeker = _base_encoder(base_path, base_cache)
        responder = copy.deepcopy(seeker)
        tokenizer = _load_tokenizer(base_path, setting=setting)
    else:
        enc_config = dict(config["encoder_config"])
        model_type = enc_config.pop("model_type")
        encoder_config = AutoConfig.for_model(model_type, **enc_config)
        seeker = AutoModel.from_config(encoder_config, add_pooling_layer=False)
        responder = AutoModel.from_config(encoder_config, add_pooling_layer=False)
        _load_encoder(seeker, _with_prefix(tensors, "seeker_encoder."), "seeker encoder", path)
        tokenizer = _load_tokenizer(path, setting=setting)
    adapters = _with_prefix(tensors, "responder_lora.")
    full_responder = _with_prefix(tensors, "responder_encoder.")
    if full_responder:
        _load_encoder(responder, full_responder, "responder encoder", path)
    elif not base:
        raise ModelLoadError(f"{path} has no responder encoder weights", setting=setting)
    if adapters:
        apply_saved_lora(responder, adapters, alpha=float(config["responder_lora"]["alpha"]))
    model = EmpathyBiEncoder(bi_config, seeker, responder)
    _load_heads(model, tensors, path)
    return LoadedBiEncoder(model, tokenizer, _pad_id(tokenizer, responder), "peercare", path)


def _base_encoder(base_path: Path, base_cache: dict[Path, nn.Module] | None) -> nn.Module:
    """The base encoder (frozen, eval mode), loaded once per ``base_cache``."""
    from transformers import AutoModel

    seeker = (base_cache or {}).get(base_path)
    if seeker is None:
        with quiet_transformers():
            # The base's unused pooler weights are skipped (add_pooling_layer=False) without a report.
            seeker = AutoModel.from_pretrained(base_path, add_pooling_layer=False, dtype=torch.float32)
        seeker.eval()
        if base_cache is not None:
            base_cache[base_path] = seeker
    return seeker


def _load_multitask_view(
    path: Path, *, mechanism: str, setting: str | None, base_cache: dict[Path, nn.Module] | None
) -> LoadedBiEncoder:
    """One mechanism's view of a multi-task folder. The three views of one folder loaded with the same
    ``base_cache`` share one model, so the scorer runs its responder once per reply."""
    from inference.empathy.multitask import MultiTaskBiEncoder, load_multitask

    config = _read_json(path / CONFIG_FILE)
    base_path = resolve_source(config["base_encoder"], setting=setting)
    model = (base_cache or {}).get(path)
    if not isinstance(model, MultiTaskBiEncoder):
        model = load_multitask(path, seeker=_base_encoder(base_path, base_cache), setting=setting)
        if base_cache is not None:
            base_cache[path] = model
    if mechanism not in model.heads:
        raise ModelLoadError(
            f"{path} has no {mechanism} head (it has {', '.join(model.heads)})", setting=setting
        )
    view = model.view(mechanism)
    tokenizer = _load_tokenizer(base_path, setting=setting)
    return LoadedBiEncoder(
        view, tokenizer, _pad_id(tokenizer, view.responder_encoder), "peercare-multitask", path
    )


# -- upstream checkpoints and Hugging Face ports, by key mapping ------------------------------------


def _load_mapped(path: Path, *, mechanism: str, setting: str | None) -> LoadedBiEncoder:
    folder = path if path.is_dir() else path.parent
    weights = _find_weights(path)
    if weights is None:
        raise ModelLoadError(
            f"no weights file (model.safetensors, *.pt, *.bin) found at {path}", setting=setting
        )
    state = _read_state_dict(weights)
    seeker_state, responder_state, heads, wrapper = map_upstream_keys(state)
    side_config = (
        _read_json(folder / CONFIG_FILE) if path.is_dir() or (folder / CONFIG_FILE).is_file() else {}
    )
    encoder_config = _encoder_config(side_config, responder_state, wrapper)
    from transformers import AutoModel

    seeker = AutoModel.from_config(encoder_config, add_pooling_layer=False)
    responder = AutoModel.from_config(encoder_config, add_pooling_layer=False)
    _load_encoder(seeker, seeker_state, "seeker encoder", weights)
    _load_encoder(responder, responder_state, "responder encoder", weights)
    kind = "upstream" if weights.suffix in (".pt", ".pth", ".bin", ".ckpt") else "hf-port"
    # Upstream lowercased every text itself (text.lower()) before its RoBERTa tokenizer; a port's own
    # tokenizer already does what the port was trained with, so only the port's config can ask for more.
    configured_lowercase = _first(side_config, ("do_lower_case", "lowercase"), None)
    bi_config = BiEncoderConfig(
        mechanism=mechanism,
        hidden_size=encoder_config.hidden_size,
        max_length=int(_first(side_config, ("max_length", "max_seq_length", "max_len"), 64)),
        seeker_mask=False,  # upstream's cross-attention never masked the seeker's padding
        lowercase=kind == "upstream" if configured_lowercase is None else bool(configured_lowercase),
        attn_heads=int(_first(side_config, ("attn_heads",), 1)),
    )
    model = EmpathyBiEncoder(bi_config, seeker, responder)
    _load_heads(model, heads, weights)
    tokenizer = _tokenizer_for_mapped(folder, side_config, wrapper, setting)
    return LoadedBiEncoder(model, tokenizer, _pad_id(tokenizer, responder), kind, path)


def map_upstream_keys(
    state: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor], str]:
    """Split an upstream-style state dict into (seeker encoder, responder encoder, heads, wrapper name).

    Handles any consistent outer prefix (``model.``, ``bi_encoder.``...) and encoders saved with a
    wrapper (``seeker_encoder.roberta.*``) or bare (``seeker_encoder.embeddings.*``). Pooler weights and
    position-id buffers are dropped (unused). Anything unrecognised is an error, not silently ignored.
    """
    anchor = next((k for k in state if "seeker_encoder." in k), None)
    if anchor is None:
        raise ValueError("no seeker_encoder.* weights: not an empathy bi-encoder checkpoint")
    prefix = anchor[: anchor.index("seeker_encoder.")]
    if prefix and not prefix.endswith("."):
        raise ValueError(f"cannot tell the outer prefix of key {anchor!r}")
    stray = [k for k in state if not k.startswith(prefix)]
    if stray:
        raise ValueError(f"keys do not share the outer prefix {prefix!r}, e.g. {stray[0]!r}")
    encoders: dict[str, dict[str, torch.Tensor]] = {"seeker_encoder.": {}, "responder_encoder.": {}}
    heads: dict[str, torch.Tensor] = {}
    wrappers: set[str] = set()
    for key, value in state.items():
        name = key[len(prefix) :]
        side = next((p for p in ENCODER_PREFIXES if name.startswith(p)), None)
        if side is not None:
            inner = name[len(side) :]
            first = inner.split(".", 1)[0]
            if first not in _ENCODER_ROOTS:
                wrappers.add(first)
                inner = inner.split(".", 1)[1]
            if inner.startswith("pooler.") or inner.endswith("position_ids"):
                continue
            encoders[side][inner] = value
        elif name.startswith(HEAD_PREFIXES):
            heads[name] = value
        else:
            raise ValueError(f"unrecognised weight {key!r} (prefix {prefix!r})")
    if len(wrappers) > 1:
        raise ValueError(f"the encoders are wrapped inconsistently: {sorted(wrappers)}")
    if not encoders["responder_encoder."]:
        raise ValueError("no responder_encoder.* weights")
    return encoders["seeker_encoder."], encoders["responder_encoder."], heads, next(iter(wrappers), "")


def _find_weights(path: Path) -> Path | None:
    if path.is_file():
        return path
    for name in _WEIGHT_NAMES:
        if (path / name).is_file():
            return path / name
    candidates = sorted(p for p in path.iterdir() if p.suffix in _WEIGHT_SUFFIXES and p.is_file())
    return candidates[0] if candidates else None


def _read_state_dict(weights: Path) -> dict[str, torch.Tensor]:
    if weights.suffix == ".safetensors":
        return load_file(weights)
    # weights_only: a pickled checkpoint can never run code while loading.
    state = torch.load(weights, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{weights.name} does not hold a state dict")
    return state


def _encoder_config(side_config: dict[str, Any], responder_state: Mapping[str, torch.Tensor], wrapper: str):
    """The encoder's config: the folder's own if it is one, a nested one, or read off the weight shapes."""
    from transformers import AutoConfig

    candidates = [side_config, *[v for v in side_config.values() if isinstance(v, dict)]]
    found = next(
        (c for c in candidates if c.get("model_type") in _ENCODER_TYPES and "hidden_size" in c), None
    )
    embeddings = responder_state["embeddings.word_embeddings.weight"]
    hidden = int(embeddings.shape[1])
    layers = 1 + max(int(k.split(".")[2]) for k in responder_state if k.startswith("encoder.layer."))
    shapes = {
        "vocab_size": int(embeddings.shape[0]),
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "intermediate_size": int(responder_state["encoder.layer.0.intermediate.dense.weight"].shape[0]),
        "max_position_embeddings": int(responder_state["embeddings.position_embeddings.weight"].shape[0]),
    }
    if "embeddings.token_type_embeddings.weight" in responder_state:
        shapes["type_vocab_size"] = int(responder_state["embeddings.token_type_embeddings.weight"].shape[0])
    if found is not None:
        options = {k: v for k, v in found.items() if k not in ("model_type", "architectures", "auto_map")}
        options.update(shapes)
        return AutoConfig.for_model(found["model_type"], **options)
    model_type = "bert" if wrapper == "bert" else "roberta"
    # A bare checkpoint does not record the head count; BERT/RoBERTa base and large all use 64 per head.
    defaults: dict[str, Any] = {"num_attention_heads": max(1, hidden // 64)}
    if model_type == "roberta":
        defaults.update(pad_token_id=1, bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)
    return AutoConfig.for_model(model_type, **defaults, **shapes)


_ENCODER_TYPES = frozenset(
    {"bert", "roberta", "xlm-roberta", "mpnet", "electra", "camembert", "deberta", "deberta-v2"}
)


def _tokenizer_for_mapped(folder: Path, side_config: dict[str, Any], wrapper: str, setting: str | None):
    if any((folder / name).is_file() for name in _TOKENIZER_FILES):
        return _load_tokenizer(folder, setting=setting)
    hint = _first(
        side_config, ("tokenizer_name", "base_model_name_or_path", "base_model", "_name_or_path"), None
    )
    fallback = hint if isinstance(hint, str) and hint else _UPSTREAM_TOKENIZER
    log.info("no tokenizer files beside the checkpoint; using the tokenizer of %s", fallback)
    return _load_tokenizer(resolve_source(fallback, setting=setting), setting=setting)


# -- shared helpers ----------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' load report (it lists the skipped pooler weights) while loading a base encoder."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


def _load_tokenizer(folder: Path, *, setting: str | None = None):
    """The folder's tokenizer; refused (ModelLoadError) when it cannot be the one a model was trained with."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        # Bare vocabulary files (upstream's vocab.json + merges.txt), or a port's config.json naming a custom
        # model type AutoTokenizer cannot map: build the tokenizer from the files directly.
        tokenizer = tokenizer_from_files(folder)
        if tokenizer is None:
            raise
        log.info("built the tokenizer of %s from its vocabulary files (%s)", folder, type(exc).__name__)
    check_tokenizer(tokenizer, folder, setting=setting)
    return tokenizer


def _pad_id(tokenizer: Any, encoder: nn.Module) -> int:
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return int(getattr(encoder.config, "pad_token_id", None) or 0)


def _with_prefix(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _load_encoder(encoder: nn.Module, state: Mapping[str, torch.Tensor], what: str, where: Path) -> None:
    state = {
        k: v.float()
        for k, v in state.items()
        if not k.startswith("pooler.") and not k.endswith("position_ids")
    }
    result = encoder.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{what} weights in {where} do not fit the encoder: "
            f"{len(missing)} missing (e.g. {missing[:2]}), {len(result.unexpected_keys)} unexpected "
            f"(e.g. {result.unexpected_keys[:2]})"
        )


def _load_heads(model: EmpathyBiEncoder, tensors: Mapping[str, torch.Tensor], where: Path) -> None:
    heads = {k: v.float() for k, v in tensors.items() if k.startswith(HEAD_PREFIXES)}
    expected = {k for k in model.state_dict() if k.startswith(HEAD_PREFIXES)}
    # norm.* is unused in the forward pass; a checkpoint without it is still complete.
    missing = sorted(k for k in expected - set(heads) if not k.startswith("norm."))
    if missing:
        raise ValueError(f"head weights missing in {where}: {missing[:4]}")
    unexpected = set(heads) - expected
    if unexpected:
        raise ValueError(f"unexpected head weights in {where}: {sorted(unexpected)[:4]}")
    model.load_state_dict(heads, strict=False)


def _check_mechanism(saved: str, wanted: str, path: Path, setting: str | None) -> None:
    if saved and wanted and saved != wanted:
        raise ModelLoadError(f"{path} is a {saved} model, configured for {wanted}", setting=setting)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


def _first(config: Mapping[str, Any], keys: tuple[str, ...], default: Any) -> Any:
    for key in keys:
        if key in config and config[key] is not None:
            return config[key]
    return default
