"""Fast tokenizers from bare vocabulary files, built the same way on every transformers version, and a sanity check.

Upstream checkpoints ship as a ``.pth`` with RoBERTa's ``vocab.json`` + ``merges.txt`` (or BERT's ``vocab.txt``)
beside it. ``RobertaTokenizerFast(vocab_file=..., merges_file=...)`` reads them under transformers 4 but ignores
them under 5 (its arguments became ``vocab=``/``merges=``), leaving a 5-token tokenizer that encodes any text to
two special tokens, silently. The ``tokenizers`` library's own classes have kept their API across that range, so
the pipelines of ``RobertaTokenizer`` (byte-level BPE) and ``BertTokenizer`` (WordPiece) are assembled from them
here. ``check_tokenizer`` refuses whatever tokenizer still comes out degenerate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from inference.errors import ModelLoadError

# A real English vocabulary has tens of thousands of entries; a few hundred cannot be what a model was trained on.
MIN_VOCABULARY = 1000
# Ordinary text (a constant, never a member's) that any usable English tokenizer splits into real pieces.
PROBE_TEXT = "I hear you, that sounds really hard. Do you want to talk about it?"

_BERT_SPECIALS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}
_ROBERTA_SPECIALS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "sep_token": "</s>",
    "pad_token": "<pad>",
    "cls_token": "<s>",
    "mask_token": "<mask>",
}


def tokenizer_from_files(folder: Path) -> Any | None:
    """A fast tokenizer from ``tokenizer.json``, ``vocab.json`` + ``merges.txt`` or ``vocab.txt``; None if none is there."""
    if (folder / "tokenizer.json").is_file():
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast(
            tokenizer_file=str(folder / "tokenizer.json"), **_declared_specials(folder)
        )
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return byte_level_bpe_tokenizer(
            folder / "vocab.json", folder / "merges.txt", **_declared_specials(folder)
        )
    if (folder / "vocab.txt").is_file():
        settings = _read_json(folder / "tokenizer_config.json")
        return wordpiece_tokenizer(
            folder / "vocab.txt",
            lowercase=bool(settings.get("do_lower_case", True)),
            **_declared_specials(folder),
        )
    return None


def byte_level_bpe_tokenizer(vocab: Path, merges: Path, **specials: str) -> Any:
    """RoBERTa's tokenizer (byte-level BPE, ``<s> … </s>``, no prefix space, trimmed offsets) from its two files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    names = {**_ROBERTA_SPECIALS, **specials}
    backend = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.RobertaProcessing(
        (names["sep_token"], _token_id(backend, names["sep_token"], vocab)),
        (names["cls_token"], _token_id(backend, names["cls_token"], vocab)),
        trim_offsets=True,
        add_prefix_space=False,
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend, **names)


def wordpiece_tokenizer(vocab: Path, *, lowercase: bool, **specials: str) -> Any:
    """BERT's tokenizer (WordPiece, ``[CLS] … [SEP]``, optionally lowercasing) from its ``vocab.txt``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    names = {**_BERT_SPECIALS, **specials}
    backend = Tokenizer(models.WordPiece.from_file(str(vocab), unk_token=names["unk_token"]))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    backend.post_processor = processors.BertProcessing(
        (names["sep_token"], _token_id(backend, names["sep_token"], vocab)),
        (names["cls_token"], _token_id(backend, names["cls_token"], vocab)),
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend, **names)


def check_tokenizer(tokenizer: Any, where: Path, *, setting: str | None = None) -> None:
    """Refuse a tokenizer no trained model can have used: a tiny vocabulary, or ordinary text read as specials only."""
    size = len(tokenizer)
    if size < MIN_VOCABULARY:
        raise ModelLoadError(
            f"the tokenizer of {where} has only {size} tokens (a usable one has at least {MIN_VOCABULARY}); "
            "its vocabulary files were not read — put the tokenizer files the model was trained with beside it",
            setting=setting,
        )
    ids = tokenizer(PROBE_TEXT, add_special_tokens=True)["input_ids"]
    unusable = set(tokenizer.all_special_ids)
    if not [i for i in ids if i not in unusable]:
        raise ModelLoadError(
            f"the tokenizer of {where} reads ordinary English as special or unknown tokens only; "
            "it does not match the model — put the tokenizer files the model was trained with beside it",
            setting=setting,
        )


def _token_id(backend: Any, token: str, source: Path) -> int:
    found = backend.token_to_id(token)
    if found is None:
        raise ValueError(f"{source} has no {token!r} token")
    return int(found)


def _declared_specials(folder: Path) -> dict[str, str]:
    """Special tokens named by ``special_tokens_map.json`` (plain strings or ``{"content": ...}``)."""
    declared = _read_json(folder / "special_tokens_map.json")
    return {
        key: value["content"] if isinstance(value, dict) else value
        for key, value in declared.items()
        if key.endswith("_token") and isinstance(value, (str, dict))
    }


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}
