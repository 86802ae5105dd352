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

from inference.risk.chat_text import split_block_quotes, without_markup
from inference.text_normalise import without_invisible
from inference.types import RiskTier

log = logging.getLogger(__name__)

DEFAULT_PHRASES_FILE = Path(__file__).resolve().parent / "crisis_phrases.txt"

# Words in front of a phrase that may negate it ("I would never kill myself").
NEGATION_REACH = 3
# How far back the speaker of a phrase that names none ("been thinking about suicide") is looked for.
SPEAKER_REACH = 5
# Words that make a phrase the writer's own: the nearest of these before a speakerless phrase keeps it.
FIRST_PERSON = frozenset({"i", "im", "ive", "id", "ill", "me", "my", "myself", "imma", "ima"})
_TIER_SECTIONS = {"high": RiskTier.HIGH, "elevated": RiskTier.ELEVATED}
_CUE_SECTIONS = ("negation", "past", "joking", "third_person")
_APOSTROPHES = "'\u2019\u2018\u02bc`\u00b4"
_SENTENCE_BREAK = re.compile(r"[.!?;\n\r]+")
_WORD = re.compile(r"[\w/]+|[^\w\s]")
# A hyphen or dash inside a word separates words: "self-harmed" reads as "self harmed".
_INNER_DASH = re.compile(r"(?<=\w)[-\u2010\u2011\u2012\u2013](?=\w)")
# Reported speech in one line: a "quoted" or “quoted” span. (Discord block quotes: ``split_block_quotes``.)
_QUOTED = re.compile(r"\"[^\"\n]+\"|\u201c[^\u201d\n]+\u201d")
_PHRASE_NAME = re.compile(r"(?P<name>[a-z0-9_]+)(?P<any>\s*\(any speaker\))?")
_REPEATED_LETTER = re.compile(r"(\w)\1+")
_REPEATED_SYLLABLE = re.compile(r"(\w\w)\1+")


class PhraseFileError(ValueError):
    """The crisis-phrase file cannot be read; the message names the file and line."""


def words(text: str) -> list[str]:
    """Case-folded words (and single symbols such as emoji) with apostrophes dropped: "I'm" -> "im"."""
    text = without_invisible(unicodedata.normalize("NFKC", text)).casefold()
    for mark in _APOSTROPHES:
        text = text.replace(mark, "")
    return _WORD.findall(_INNER_DASH.sub(" ", text))


def sentences(text: str) -> list[list[str]]:
    return [found for part in _SENTENCE_BREAK.split(text) if (found := words(part))]


Pattern = tuple[str, ...]  # words; "*" matches any one word
# A letter written three times or more in a row: chat draws words out ("dieeee", "myselffff").
_DRAWN_OUT = re.compile(r"([^\W\d_])\1{2,}")


def _read_as(token: str, vocabulary: frozenset[str]) -> str:
    """A drawn-out ``token`` read as the phrase-file word it draws out, if it squeezes into one: each run kept
    twice ("killll" -> "kill") or once ("dieeee" -> "die"). Any other token is left as it is."""
    if not _DRAWN_OUT.search(token):
        return token
    for candidate in (_DRAWN_OUT.sub(r"\1\1", token), _DRAWN_OUT.sub(r"\1", token)):
        if candidate in vocabulary:
            return candidate
    return token


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


def _squeezed(word: str) -> str:
    """A word with drawn-out letters and syllables shortened: "lmaooo" -> "lmao", "hahahaha" -> "ha"."""
    return _REPEATED_SYLLABLE.sub(r"\1", _REPEATED_LETTER.sub(r"\1", word))


def reported_speech(text: str) -> tuple[str, str]:
    """``text`` split into the writer's own words and the words they quote (each part's pieces on own lines):
    Discord block quotes as the crisis head leaves them out, then "double-quoted" spans."""
    own, blocks = split_block_quotes(text)
    quoted = [found.group(0) for found in _QUOTED.finditer(own)]
    return _QUOTED.sub("\n", own), "\n".join([blocks, *quoted])


@dataclass(frozen=True)
class CrisisPhrase:
    name: str
    tier: RiskTier
    patterns: tuple[Pattern, ...]
    # Burdensomeness speaks through others ("they'd be better off with the insurance money"): such a phrase is the
    # writer's whoever its subject is, so the third-person rule leaves it alone.
    any_speaker: bool = False


@dataclass(frozen=True)
class PhraseBook:
    """Crisis phrases plus the cue words that cancel (negation, past, third person) or soften (joking) a match."""

    phrases: tuple[CrisisPhrase, ...]
    negation: tuple[Pattern, ...] = ()
    past: tuple[Pattern, ...] = ()
    joking: tuple[Pattern, ...] = ()
    third_person: tuple[Pattern, ...] = ()

    @functools.cached_property
    def _drawn_out_laughs(self) -> dict[str, int]:
        """Each one-word joking cue drawn out to its shortest form ("hahaha" -> "ha"), with the length of the
        shortest cue it came from; read once per book, not per sentence."""
        shortest: dict[str, int] = {}
        for cue in self.joking:
            if len(cue) == 1:
                squeezed = _squeezed(cue[0])
                shortest[squeezed] = min(len(cue[0]), shortest.get(squeezed, len(cue[0])))
        return shortest

    def _laughs(self, tokens: Sequence[str]) -> bool:
        """True when a joking cue occurs, one-word cues also drawn out ("lmaooo", "hahahaha", "lolol").

        A drawn-out form must be at least as long as the cue, so "ha" alone is not read as "haha"."""
        if _occurs(self.joking, tokens):
            return True
        shortest = self._drawn_out_laughs
        return any(len(token) >= shortest.get(_squeezed(token), len(token) + 1) for token in tokens)

    @functools.cached_property
    def _vocabulary(self) -> frozenset[str]:
        """Every word a phrase or a cue names; read once per book."""
        patterns = [pattern for phrase in self.phrases for pattern in phrase.patterns]
        patterns += [*self.negation, *self.past, *self.joking, *self.third_person]
        return frozenset(word for pattern in patterns for word in pattern if word != "*")

    def _sentences(self, text: str) -> list[list[str]]:
        """``text``'s sentences as words, drawn-out words read as the words they draw out (``_read_as``)."""
        vocabulary = self._vocabulary
        return [[_read_as(token, vocabulary) for token in tokens] for tokens in sentences(text)]

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PHRASES_FILE) -> PhraseBook:
        return parse_phrase_file(Path(path).read_text(encoding="utf-8"), source=str(path))

    def matches(self, text: str) -> tuple[str, ...]:
        """``tier:name`` of every phrase found in ``text`` (deduplicated, strongest tier first)."""
        found: dict[str, RiskTier] = {}
        # An invisible character may hide inside a word ("ki\u200bll") or stand where a space was
        # ("kill\u2062myself"): the text is read both ways, with invisible characters dropped and as spaces.
        # Discord markup around a word ("i want to **kill** myself") is dressing, not a word: it goes first.
        text = without_markup(text)
        for variant in dict.fromkeys((without_invisible(text), without_invisible(text, replacement=" "))):
            own, quoted = reported_speech(variant)
            self._match_into(found, self._sentences(own), strongest=RiskTier.HIGH)
            # Quoted words can still show distress on the dashboard, but never page anyone by themselves.
            self._match_into(found, self._sentences(quoted), strongest=RiskTier.ELEVATED)
        ordered = sorted(found.items(), key=lambda item: (-item[1].rank, item[0]))
        return tuple(f"{tier.value}:{name}" for name, tier in ordered)

    def _match_into(self, found: dict[str, RiskTier], parts: list[list[str]], *, strongest: RiskTier) -> None:
        for index, tokens in enumerate(parts):
            if _occurs(self.past, tokens):
                continue
            matched = [
                phrase
                for phrase in self.phrases
                if any(self._counts(pattern, tokens, phrase.any_speaker) for pattern in phrase.patterns)
            ]
            if not matched:
                continue
            following = parts[index + 1] if index + 1 < len(parts) else []
            joking = self._laughs(tokens) or self._laughs(following)
            for phrase in matched:
                tier = RiskTier.ELEVATED if joking and phrase.tier == RiskTier.HIGH else phrase.tier
                tier = strongest if tier.rank > strongest.rank else tier
                found[phrase.name] = RiskTier.max(tier, found.get(phrase.name, RiskTier.NONE))

    def _counts(self, pattern: Pattern, tokens: Sequence[str], any_speaker: bool = False) -> bool:
        """True when ``pattern`` occurs at least once as the writer's own words.

        Not when a negation cue stands just before it, nor, for a phrase that names no speaker ("been thinking
        about suicide", "end it all"), when the nearest speaker before it is someone else ("my brother says
        he's been thinking about suicide")."""
        starts = _find(pattern, tokens)
        if not starts:
            return False
        names_speaker = any_speaker or any(word in FIRST_PERSON for word in pattern)
        for start in starts:
            before = tokens[max(0, start - NEGATION_REACH - 1) : start]
            if any(_find(cue, before) for cue in self.negation):
                continue
            if names_speaker or not self._someone_else_speaks(tokens[max(0, start - SPEAKER_REACH) : start]):
                return True
        return False

    def _someone_else_speaks(self, before: Sequence[str]) -> bool:
        """Whether the speaker nearest before a phrase is a third person (a first-person word nearer keeps it)."""
        for end in range(len(before), 0, -1):
            # A comma or other mark ends the clause: "lost my job, he left, been thinking about suicide" is the
            # writer's own.
            if before[end - 1] in FIRST_PERSON or not before[end - 1].isalnum():
                return False
            if any(_find(cue, before[max(0, end - len(cue)) : end]) for cue in self.third_person):
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
        found = _PHRASE_NAME.fullmatch(name.strip())
        if not sep or found is None:
            raise PhraseFileError(
                f"{source}:{number}: expected `name = phrase | phrase` with a snake_case name"
                " (optionally followed by `(any speaker)`)"
            )
        name = found.group("name")
        patterns = tuple(p for p in (_pattern(alt) for alt in alternatives.split("|")) if p)
        if not patterns:
            raise PhraseFileError(f"{source}:{number}: {name} has no phrases")
        phrases.append(
            CrisisPhrase(name, _TIER_SECTIONS[section], patterns, any_speaker=bool(found.group("any")))
        )
    names = [phrase.name for phrase in phrases]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PhraseFileError(f"{source}: phrase names used twice: {', '.join(duplicates)}")
    return PhraseBook(
        tuple(phrases),
        negation=tuple(cues["negation"]),
        past=tuple(cues["past"]),
        joking=tuple(cues["joking"]),
        third_person=tuple(cues["third_person"]),
    )


@functools.lru_cache(maxsize=1)
def default_phrase_book() -> PhraseBook:
    """The shipped phrase file, read once."""
    return PhraseBook.load(DEFAULT_PHRASES_FILE)


def match_crisis_phrases(text: str) -> tuple[str, ...]:
    """Crisis-phrase matches of ``text`` against the shipped phrase file."""
    return default_phrase_book().matches(text)
