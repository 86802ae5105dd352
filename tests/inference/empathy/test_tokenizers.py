"""Tokenizers read from checkpoint folders: upstream's files give upstream's ids, and a degenerate one is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.empathy.checkpoints import load_bi_encoder
from inference.empathy.text import tokenize
from inference.errors import ModelLoadError
from tests.support.tiny_empathy import (
    build_tiny_bi_encoder,
    save_bpe_vocabulary,
    save_hf_port,
    save_upstream,
    tiny_tokenizer,
)

SETTING = "EMPATHY_ER_MODEL"
# Made-up texts: punctuation, emoji, odd spacing, and characters whose lowercase is longer than themselves.
TEXTS = [
    "That sounds exhausting. Do you want to talk about what's worrying you most?",
    "I'm so sorry 💙",
    "  Have you tried   writing your thoughts down\tbefore bed?",
    "İstanbul was hard. İ know how that feels, DAY after DAY.",
]


def _upstream_checkpoint(folder: Path) -> Path:
    """An upstream ``.pth`` with only RoBERTa's vocab.json + merges.txt beside it (no config, no tokenizer.json)."""
    model = build_tiny_bi_encoder("ER", model_type="roberta", seeker_mask=False, lowercase=True)
    save_bpe_vocabulary(folder)
    return save_upstream(model, folder, with_encoder_config=False, with_tokenizer=False, name="ER.pth")


def _upstream_tokenizer(folder: Path):  # type: ignore[no-untyped-def]
    """The tokenizer class upstream used, loaded as upstream loaded it (from_pretrained on the files)."""
    from transformers import RobertaTokenizer

    return RobertaTokenizer.from_pretrained(folder)


def test_vocab_merges_folder_tokenizes_like_upstream(tmp_path: Path) -> None:
    checkpoint = _upstream_checkpoint(tmp_path / "upstream")
    loaded = load_bi_encoder(checkpoint, mechanism="ER", setting=SETTING)
    upstream = _upstream_tokenizer(checkpoint.parent)
    assert len(loaded.tokenizer) == len(upstream)
    for text in TEXTS:
        assert loaded.tokenizer(text)["input_ids"] == upstream(text)["input_ids"]


def test_lowercasing_matches_upstream_ids(tmp_path: Path) -> None:
    # Upstream called text.lower() on the whole text before tokenizing ("İ" becomes "i" + a combining dot).
    checkpoint = _upstream_checkpoint(tmp_path / "upstream")
    loaded = load_bi_encoder(checkpoint, mechanism="ER", setting=SETTING)
    assert loaded.model.config.lowercase
    upstream = _upstream_tokenizer(checkpoint.parent)
    for text in TEXTS:
        (ours,) = tokenize(loaded.tokenizer, [text], max_length=64, lowercase=True)
        assert ours.input_ids == upstream(text.lower(), truncation=True, max_length=64)["input_ids"]


def test_lowercased_offsets_point_into_the_original_text(tmp_path: Path) -> None:
    checkpoint = _upstream_checkpoint(tmp_path / "upstream")
    tokenizer = load_bi_encoder(checkpoint, mechanism="ER", setting=SETTING).tokenizer
    text = "İİ DAY after DAY"
    (tokens,) = tokenize(tokenizer, [text], max_length=64, lowercase=True)
    spans = [o for o in tokens.offsets if o is not None]
    assert all(0 <= s <= e <= len(text) for s, e in spans)
    # Every written character is covered ("İ" by both pieces of its lowercase), and nothing else.
    assert {i for s, e in spans for i in range(s, e)} == {i for i, ch in enumerate(text) if not ch.isspace()}
    assert text[slice(*spans[-1])] == "DAY"


def test_hf_port_lowercasing_follows_its_config(tmp_path: Path) -> None:
    model = build_tiny_bi_encoder("EX", model_type="roberta", seeker_mask=False)
    plain = save_hf_port(model, tmp_path / "plain")
    # No lowercasing setting: the port's own tokenizer decides (the tiny one lowercases by itself).
    assert not load_bi_encoder(plain, mechanism="EX").model.config.lowercase
    lowered = save_hf_port(model, tmp_path / "lowered")
    config = json.loads((lowered / "config.json").read_text())
    (lowered / "config.json").write_text(json.dumps({**config, "do_lower_case": True}))
    assert load_bi_encoder(lowered, mechanism="EX").model.config.lowercase


def _upstream_with_vocab_txt(folder: Path, words: list[str]) -> Path:
    model = build_tiny_bi_encoder("ER", model_type="roberta", seeker_mask=False)
    checkpoint = save_upstream(model, folder, with_encoder_config=False, with_tokenizer=False, name="ER.pth")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (folder / "vocab.txt").write_text("\n".join(specials + words) + "\n", encoding="utf-8")
    return checkpoint


def test_tokenizer_with_a_tiny_vocabulary_is_refused(tmp_path: Path) -> None:
    checkpoint = _upstream_with_vocab_txt(tmp_path / "tiny", ["hello", "world"])
    with pytest.raises(ModelLoadError, match=rf"only 7 tokens.*{SETTING}"):
        load_bi_encoder(checkpoint, mechanism="ER", setting=SETTING)


def test_tokenizer_reading_text_as_specials_only_is_refused(tmp_path: Path) -> None:
    checkpoint = _upstream_with_vocab_txt(tmp_path / "junk", [f"zq{i}x" for i in range(2000)])
    with pytest.raises(ModelLoadError, match=rf"special or unknown tokens only.*{SETTING}"):
        load_bi_encoder(checkpoint, mechanism="ER", setting=SETTING)


def test_test_tokenizer_reads_real_word_pieces() -> None:
    tokenizer = tiny_tokenizer()
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("That sounds really hard")["input_ids"])
    assert len(tokenizer) == 1996 + 1500
    assert tokens == ["[CLS]", "that", "sound", "##s", "really", "hard", "[SEP]"]
