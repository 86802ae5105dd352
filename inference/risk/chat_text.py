"""Chat normalisation for the crisis head: what a message says, without how Discord or a keyboard dressed it.

Why: the high tier must not move because a message is in lower case, in **bold**, behind a ||spoiler||, full
of "!!!", split over lines, or typed with an emoji. The crisis head reads the text this function returns, and
its training rows went through the same function (save and load are mirrors). Sentence-level chunks let a
crisis line inside a long message be read on its own.
"""

from __future__ import annotations

import re
import unicodedata

from inference.text_normalise import has_visible_text

# <@123>, <@!123>, <@&123>, <#123>: ids carry no meaning for risk. Custom emoji keep their name.
_MENTION = re.compile(r"<(?:@[!&]?|#)\d+>")
_CUSTOM_EMOJI = re.compile(r"<a?:(\w+):\d+>")
_URL = re.compile(r"https?://\S+")
# Markdown markers Discord renders: bold/italic/underline/strike/spoiler/code, block quotes, headings, lists.
_MARKERS = re.compile(r"\*{1,3}|_{2}|~~|\|\||`{1,3}")
_LINE_PREFIX = re.compile(r"^\s*(?:>>>|>|#{1,3}|-#|[-*+]|\d+[.)])\s+", re.MULTILINE)
_REPEATED_PUNCTUATION = re.compile(r"([!?.,])\1+")
_LONG_LETTER_RUNS = re.compile(r"(\w)\1{2,}")  # "sooooo" -> "soo"
_SPACES = re.compile(r"[ \t\f\v]+")
_SPACE_BEFORE_PUNCTUATION = re.compile(
    r"[ \t\f\v]+(?=[!?.,;:])"
)  # "anymore !" (an emoji dropped) = "anymore!"
# Typographic apostrophes and quotes become ASCII ones: "can’t" and "can't" are the same word.
_QUOTES = str.maketrans(
    {"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u00b4": "'", "\u201c": '"', "\u201d": '"'}
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_CLOSING = re.compile(r"[\s.!?,;:]+$")


# Discord block quotes: a line that starts with "> ", or everything after a line that starts with ">>> ".
_QUOTE_REST = re.compile(r"^[ \t]*>>> [\s\S]*", re.MULTILINE)
_QUOTE_LINE = re.compile(r"^[ \t]*> .*(?:\n|$)", re.MULTILINE)


def split_block_quotes(text: str) -> tuple[str, str]:
    """``text`` as (the writer's own lines, the lines they quote).

    A Discord block quote shows someone else's words, or a line the writer answers: a responder quoting "> i
    don't want to be here anymore" before offering 988 is not in danger. When nothing but quotes is left, the
    whole message is the writer's own (some members style their own words as a quote). A literal "\\n" counts
    as a line break, as ``normalise_chat`` reads it."""
    lines = text.replace("\\n", "\n")
    quoted = [found.group(0) for found in _QUOTE_REST.finditer(lines)]
    own = _QUOTE_REST.sub("", lines)
    quoted += [found.group(0) for found in _QUOTE_LINE.finditer(own)]
    own = _QUOTE_LINE.sub("", own)
    if not quoted or not has_visible_text(own):
        return text, ""
    return own, "\n".join(part.rstrip("\n") for part in quoted)


def own_words(text: str) -> str:
    """The lines a risk judgement reads: the writer's own, Discord block quotes left out (``split_block_quotes``)."""
    return split_block_quotes(text)[0]


def without_markup(text: str) -> str:
    """``text`` without Discord's inline markers (bold, italics, underline, strike-through, spoiler, code), its
    words kept: "**6 months** without" reads "6 months without", "i want to ||kill|| myself" as the words say.
    The phrase floor reads this, and ``normalise_chat`` (what the crisis head reads) removes markup through it."""
    return _MARKERS.sub("", text)


def _is_droppable(char: str) -> bool:
    """Format (Cf: zero-width, bidi, tag characters), controls other than newline, variation selectors, and
    pictographic symbols (So: emoji, dingbats; and the emoji skin-tone modifiers).

    Emoji go because the encoder cannot read them: its vocabulary has none, so each became ``[UNK]`` and one
    appended "😭" or "🙂" moved a message from high to elevated (22 of the independent suite's 400). Discord's
    custom emoji are words (``:sob:``) and are kept by ``_CUSTOM_EMOJI``."""
    if char == "\n":
        return False
    category = unicodedata.category(char)
    return (
        category in ("Cf", "Cc", "So") or "\ufe00" <= char <= "\ufe0f" or "\U0001f3fb" <= char <= "\U0001f3ff"
    )


def normalise_chat(text: str) -> str:
    """The message as the crisis head reads it: NFKC, no markup or invisible characters, lower case.

    Line breaks are kept (they separate the sentences ``chunks`` reads); everything else is one space.
    """
    text = unicodedata.normalize("NFKC", text)
    text = "".join(char for char in text if not _is_droppable(char))
    text = text.translate(_QUOTES)
    text = _CUSTOM_EMOJI.sub(r" \1 ", text)
    text = _MENTION.sub(" ", text)
    text = _URL.sub(" ", text)
    text = _LINE_PREFIX.sub("", text)
    text = without_markup(text)
    text = text.replace("\\n", "\n").replace("\r", "\n")
    text = _SPACE_BEFORE_PUNCTUATION.sub("", text)
    text = _REPEATED_PUNCTUATION.sub(r"\1", text)
    text = _LONG_LETTER_RUNS.sub(r"\1\1", text)
    text = text.casefold()
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def sentences(normalised: str) -> list[str]:
    """Sentences and lines of a normalised message, in order, without their closing punctuation.

    "i want to die" and "i want to die!" read the same: end punctuation must not move a tier.
    """
    parts = (_CLOSING.sub("", part.strip()) for part in _SENTENCE_END.split(normalised))
    return [part for part in parts if part]


def reading(normalised: str) -> str:
    """The whole message as one line of sentences: what the head embeds for it."""
    return " ".join(sentences(normalised)) or normalised


def head_text(text: str) -> str:
    """What a whole-message head embeds for a raw message when it is trained: its reading, or "." when nothing
    is left (an emoji-only or markup-only message), as ``CrisisHead`` reads an empty message at inference."""
    return reading(normalise_chat(text)) or "."


def chunks(normalised: str, *, window: int = 2) -> list[str]:
    """The whole message, then each run of ``window`` consecutive sentences when there are more than that.

    A short message is one chunk; a long one is also read a sentence pair at a time, so one crisis line in
    a long post is seen without the rest diluting it, and a pair keeps "like really / the pills are here"
    together. ``window`` 0: the whole message only.
    """
    parts = sentences(normalised)
    whole = reading(normalised)
    if len(parts) <= window or window <= 0:
        return [whole] if whole else []
    return [whole, *(" ".join(parts[start : start + window]) for start in range(len(parts) - window + 1))]
