"""The one text normaliser: which characters render as nothing, and the text that is left without them.

Inference (is there anything to score?), the bot (is a message scorable, is an edit material, what goes into an
alert excerpt) and the crisis-phrase matcher all ask this module, so they cannot drift apart: a character that
hides a phrase from the matcher is the same character that makes a reply look empty to the models.

"Invisible" is every Unicode format character (category Cf: zero-width spaces and joiners, bidi marks,
embeddings, overrides and isolates U+202A-202E / U+2066-2069, invisible operators U+2061-2064, the tag block
U+E0000-E007F, soft hyphen, BOM, ...) plus the few characters outside Cf that also draw nothing: the combining
grapheme joiner, the Hangul fillers, the braille blank, the variation selectors and the tag block's unassigned
code points.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata

# Invisible characters that are not in category Cf.
_NOT_FORMAT_BUT_INVISIBLE = (
    "\u034f"  # combining grapheme joiner
    "\u115f\u1160\u3164\uffa0"  # Hangul fillers
    "\u17b4\u17b5"  # Khmer inherent vowels (render as nothing)
    "\u2800"  # braille pattern blank
    + "".join(map(chr, range(0xFE00, 0xFE10)))  # variation selectors
    + "".join(map(chr, range(0xE0100, 0xE01F0)))  # variation selectors supplement
    + "".join(map(chr, range(0xE0000, 0xE0080)))  # the whole tag block, its unassigned code points too
)
_SPACES = re.compile(r"\s+")


@functools.cache
def invisible_characters() -> frozenset[str]:
    """Every character this module treats as invisible (computed once from this Python's Unicode tables)."""
    format_chars = (chr(cp) for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)) == "Cf")
    return frozenset(format_chars) | frozenset(_NOT_FORMAT_BUT_INVISIBLE)


@functools.cache
def _removal_table(replacement: str) -> dict[int, str | None]:
    return dict.fromkeys(map(ord, invisible_characters()), replacement or None)


def without_invisible(text: str, *, replacement: str = "") -> str:
    """``text`` with every invisible character removed (or replaced by ``replacement``, e.g. a space)."""
    return text.translate(_removal_table(replacement))


def visible_text(text: str) -> str:
    """NFKC ``text`` without invisible characters and without whitespace at either end; empty: nothing to score."""
    return without_invisible(unicodedata.normalize("NFKC", text)).strip()


def has_visible_text(text: str | None) -> bool:
    """True when ``text`` shows at least one character a person can see (the models score only such text)."""
    return bool(text) and bool(visible_text(text or ""))


def comparable_text(text: str) -> str:
    """What counts as the same text: visible characters, whitespace collapsed to single spaces, case-folded."""
    return _SPACES.sub(" ", visible_text(text)).casefold()


def readable_text(text: str) -> str:
    """``text`` as shown to a person (an alert excerpt): no invisible characters, whitespace collapsed."""
    return _SPACES.sub(" ", without_invisible(text)).strip()
