"""The transparent crisis-phrase layer: first-person crisis wording, read from a file a moderator can read.

A match names its tier (``high:kill_myself``, ``elevated:cant_go_on``) so that ``assign_tier`` can raise a
message's tier from the match names alone, e.g. when the bot re-applies a guild's thresholds later.
The matching rules are documented at the top of ``crisis_phrases.txt``.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from inference.text_normalise import without_invisible
from inference.types import RiskTier

log = logging.getLogger(__name__)

DEFAULT_PHRASES_FILE = Path(__file__).resolve().parent / "crisis_phrases.txt"

# Words in front of a phrase that may negate it ("I would never kill myself").
NEGATION_REACH = 3
_TIER_SECTIONS = {"high": RiskTier.HIGH, "elevated": RiskTier.ELEVATED}
_CUE_SECTIONS = ("negation", "past", "joking")
_APOSTROPHES = "'\u2019\u2018\u02bc`\u00b4"
_SENTENCE_BREAK = re.compile(r"[.!?;\n\r]+")
_WORD = re.compile(r"[\w/]+|[^\w\s]")


class PhraseFileError(ValueError):
    """The crisis-phrase file cannot be read; the message names the file and line."""


def words(text: str) -> list[str]:
    """Case-folded words (and single symbols such as emoji) with apostrophes dropped: "I'm" -> "im"."""
    text = without_invisible(unicodedata.normalize("NFKC", text)).casefold()
    for mark in _APOSTROPHES:
        text = text.replace(mark, "")
    return _WORD.findall(text)


def sentences(text: str) -> list[list[str]]:
    return [found for part in _SENTENCE_BREAK.split(text) if (found := words(part))]


Pattern = tuple[str, ...]  # words; "*" matches any one word


def _find(pattern: Pattern, tokens: Sequence[str]) -> list[int]:
    """Start positions where ``pattern`` occurs in ``tokens``.

    The first word is compared before anything else: most positions fail there, and slicing every position
    first made phrase matching about a tenth of the worker's CPU under load (8x slower on ESConv turns)."""
    first = pattern[0]
    return [
        start
        for start in range(len(tokens) - len(pattern) + 1)
        if (first == "*" or tokens[start] == first)
        and all(p == "*" or p == tokens[start + offset] for offset, p in enumerate(pattern))
    ]


def _occurs(patterns: Sequence[Pattern], tokens: Sequence[str]) -> bool:
    return any(_find(pattern, tokens) for pattern in patterns)


@dataclass(frozen=True)
class CrisisPhrase:
    name: str
    tier: RiskTier
    patterns: tuple[Pattern, ...]


@dataclass(frozen=True)
class PhraseBook:
    """Crisis phrases plus the cue words that cancel (negation, past) or soften (joking) a match."""

    phrases: tuple[CrisisPhrase, ...]
    negation: tuple[Pattern, ...] = ()
    past: tuple[Pattern, ...] = ()
    joking: tuple[Pattern, ...] = ()

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PHRASES_FILE) -> PhraseBook:
        return parse_phrase_file(Path(path).read_text(encoding="utf-8"), source=str(path))

    def matches(self, text: str) -> tuple[str, ...]:
        """``tier:name`` of every phrase found in ``text`` (deduplicated, strongest tier first)."""
        found: dict[str, RiskTier] = {}
        # An invisible character may hide inside a word ("ki\u200bll") or stand where a space was
        # ("kill\u2062myself"): the text is read both ways, with invisible characters dropped and as spaces.
        for variant in dict.fromkeys((without_invisible(text), without_invisible(text, replacement=" "))):
            self._match_into(found, sentences(variant))
        ordered = sorted(found.items(), key=lambda item: (-item[1].rank, item[0]))
        return tuple(f"{tier.value}:{name}" for name, tier in ordered)

    def _match_into(self, found: dict[str, RiskTier], parts: list[list[str]]) -> None:
        for index, tokens in enumerate(parts):
            if _occurs(self.past, tokens):
                continue
            following = parts[index + 1] if index + 1 < len(parts) else []
            joking = _occurs(self.joking, tokens) or _occurs(self.joking, following)
            for phrase in self.phrases:
                if not any(self._counts(pattern, tokens) for pattern in phrase.patterns):
                    continue
                tier = RiskTier.ELEVATED if joking and phrase.tier == RiskTier.HIGH else phrase.tier
                found[phrase.name] = RiskTier.max(tier, found.get(phrase.name, RiskTier.NONE))

    def _counts(self, pattern: Pattern, tokens: Sequence[str]) -> bool:
        """True when ``pattern`` occurs at least once without a negation cue just before it."""
        for start in _find(pattern, tokens):
            before = tokens[max(0, start - NEGATION_REACH - 1) : start]
            if not any(_find(cue, before) for cue in self.negation):
                return True
        return False


def _pattern(text: str) -> Pattern:
    return tuple(words(text))


def parse_phrase_file(content: str, *, source: str = "crisis phrases") -> PhraseBook:
    phrases: list[CrisisPhrase] = []
    cues: dict[str, list[Pattern]] = {name: [] for name in _CUE_SECTIONS}
    section: str | None = None
    for number, raw in enumerate(content.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
            if section not in _TIER_SECTIONS and section not in _CUE_SECTIONS:
                raise PhraseFileError(f"{source}:{number}: unknown section [{section}]")
            continue
        if section is None:
            raise PhraseFileError(f"{source}:{number}: text before the first [section]")
        if section in _CUE_SECTIONS:
            cues[section].extend(p for p in (_pattern(alt) for alt in line.split("|")) if p)
            continue
        name, sep, alternatives = line.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[a-z0-9_]+", name):
            raise PhraseFileError(
                f"{source}:{number}: expected `name = phrase | phrase` with a snake_case name"
            )
        patterns = tuple(p for p in (_pattern(alt) for alt in alternatives.split("|")) if p)
        if not patterns:
            raise PhraseFileError(f"{source}:{number}: {name} has no phrases")
        phrases.append(CrisisPhrase(name, _TIER_SECTIONS[section], patterns))
    names = [phrase.name for phrase in phrases]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PhraseFileError(f"{source}: phrase names used twice: {', '.join(duplicates)}")
    return PhraseBook(
        tuple(phrases),
        negation=tuple(cues["negation"]),
        past=tuple(cues["past"]),
        joking=tuple(cues["joking"]),
    )


@functools.lru_cache(maxsize=1)
def default_phrase_book() -> PhraseBook:
    """The shipped phrase file, read once."""
    return PhraseBook.load(DEFAULT_PHRASES_FILE)


def match_crisis_phrases(text: str) -> tuple[str, ...]:
    """Crisis-phrase matches of ``text`` against the shipped phrase file."""
    return default_phrase_book().matches(text)
