"""Compose coaching notes: what a reply did well (quoting its rationale spans) and one next step.

Pure functions over levels, spans and the reply text — the bot and ``peercare score`` share them, so the
CLI shows exactly the note a responder would get. Notes never mention the seeker's risk, never diagnose
anyone, and talk about the reply, not the person.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from inference.types import Mechanism, ReplyScore, RiskTier

log = logging.getLogger(__name__)

# What ``peercare score`` says instead of a note when the rule below stands coaching down.
NO_NOTE_AUTHOR_AT_RISK = (
    "No coaching note: this reply is itself at high risk, so its author may be the one in danger. It is "
    "handled as their own message (a case, as the server's consent settings allow), never praised for empathy."
)


def author_may_be_in_danger(reply_risk_tier: str | None) -> bool:
    """A reply whose own risk (as the latest of its author's burst) is high earns no coaching note and no
    invitation to coaching: a note praising its empathy would be tone-deaf to a responder who may be in danger."""
    return reply_risk_tier == RiskTier.HIGH.value


DISCORD_MESSAGE_LIMIT = 2000
QUOTE_CHARS = 90
DIGEST_MAX_ITEMS = 5

# What a quoted span shows, in the responder's words (the article makes the sentence read naturally).
_WHAT_IT_SHOWS = {
    Mechanism.EMOTIONAL_REACTIONS: ("shows warmth and care for what they are going through", "an"),
    Mechanism.INTERPRETATIONS: ("shows you understood how they feel", "an"),
    Mechanism.EXPLORATIONS: ("invites them to share more", "an"),
}

# When levels tie, suggest the mechanism peer supporters use least first (Sharma et al. 2020).
_NEXT_STEP_ORDER = (Mechanism.EXPLORATIONS, Mechanism.INTERPRETATIONS, Mechanism.EMOTIONAL_REACTIONS)

# One concrete next step per mechanism: (for a reply without it, for a reply with a weak form of it).
_NEXT_STEPS = {
    Mechanism.EXPLORATIONS: (
        "Next time, try ending with one open question that invites them to say more, such as "
        "“What has that been like for you?”",
        "To go further, ask about their own experience rather than a general “how are you?”, such as "
        "“What's been the hardest part of this for you?”",
    ),
    Mechanism.EMOTIONAL_REACTIONS: (
        "Next time, try naming the feeling you hear, such as “That sounds really exhausting.”",
        "To go further, name the specific feeling you hear, such as “That sounds so lonely,” "
        "rather than a general “sorry to hear that.”",
    ),
    Mechanism.INTERPRETATIONS: (
        "Next time, try reflecting back what you understood, such as "
        "“It sounds like you've been carrying this on your own for a while.”",
        "To go further, say in your own words what you understood about their situation, such as "
        "“It sounds like you feel you have to hold it together for everyone.”",
    ),
}
_ALL_STRONG_STEP = (
    "Your reply used all three mechanisms strongly. Keep following up with open questions as the "
    "conversation goes on."
)

FOOTER = (
    "-# Only you can see this note. PeerCare looks at replies, not people. "
    "Stop these notes any time with `/peercare coaching off` in the server."
)

_MARKDOWN = re.compile(r"([\\*_~`|>#\[\]()])")
_SPACES = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


@dataclass(frozen=True, slots=True)
class ReplyForCoaching:
    """What the composer needs about one scored reply. ``reply_text`` is None once retention expired."""

    levels: Mapping[Mechanism, int]
    spans: Mapping[Mechanism, Sequence[tuple[int, int]]] = field(default_factory=dict)
    reply_text: str | None = None
    jump_url: str | None = None

    @classmethod
    def from_score(cls, score: ReplyScore, reply_text: str, jump_url: str | None = None) -> ReplyForCoaching:
        by_mechanism = score.empathy.by_mechanism()
        return cls(
            levels={m: int(s.level) for m, s in by_mechanism.items()},
            spans={m: [(span.start, span.end) for span in s.rationales] for m, s in by_mechanism.items()},
            reply_text=reply_text,
            jump_url=jump_url,
        )

    @classmethod
    def from_stored(
        cls,
        levels: Mapping[Mechanism, int],
        rationale_spans: Iterable[Mapping[str, Any]],
        reply_text: str | None,
        jump_url: str | None,
    ) -> ReplyForCoaching:
        spans: dict[Mechanism, list[tuple[int, int]]] = {}
        for span in rationale_spans:
            try:
                mechanism = Mechanism(span["mechanism"])
                spans.setdefault(mechanism, []).append((int(span["start"]), int(span["end"])))
            except (KeyError, ValueError, TypeError):
                log.warning("ignoring a malformed stored rationale span")
        return cls(levels=dict(levels), spans=spans, reply_text=reply_text, jump_url=jump_url)


@dataclass(frozen=True, slots=True)
class CoachingNote:
    text: str
    praised: tuple[Mechanism, ...]
    next_step_for: Mechanism | None


def escape_markdown(text: str) -> str:
    return _MARKDOWN.sub(r"\\\1", text)


def merge_spans(spans: Sequence[tuple[int, int]], text: str) -> list[tuple[int, int]]:
    """Join spans separated only by spaces or punctuation (token-level rationales become phrases)."""
    cleaned = sorted((max(0, s), min(len(text), e)) for s, e in spans if e > s and s < len(text))
    merged: list[tuple[int, int]] = []
    for start, end in cleaned:
        if merged and not text[merged[-1][1] : start].strip(" \t\n,.;:!?'\"-"):
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _sentences(phrase: str) -> list[str]:
    return [part.strip(" ,;:-") for part in _SENTENCE_END.split(phrase) if part.strip(" ,;:-")]


def best_quote(
    spans: Sequence[tuple[int, int]],
    text: str | None,
    limit: int = QUOTE_CHARS,
    *,
    mechanism: Mechanism | None = None,
    avoid: Collection[str] = (),
) -> str | None:
    """The rationale sentence that best shows ``mechanism``, trimmed to ``limit`` characters.

    A rationale often spans several sentences; quoting the one that fits (a question for Explorations, a
    statement otherwise) and not one already quoted for another mechanism reads as specific feedback.
    """
    if not text or not spans:
        return None
    phrases = [_SPACES.sub(" ", text[s:e]).strip(" ,;:-") for s, e in merge_spans(spans, text)]
    candidates = [sentence for phrase in phrases if phrase for sentence in _sentences(phrase)]
    if not candidates:
        return None
    wants_question = mechanism is Mechanism.EXPLORATIONS

    def rank(sentence: str) -> tuple[bool, bool, int]:
        fits = ("?" in sentence) == wants_question if mechanism is not None else True
        return (sentence not in avoid, fits, len(sentence))

    phrase = max(candidates, key=rank)
    if len(phrase) > limit:
        phrase = (phrase[: limit - 1].rsplit(" ", 1)[0] or phrase[: limit - 1]) + "…"
    return phrase


def weakest_mechanism(levels: Mapping[Mechanism, float]) -> Mechanism | None:
    """The mechanism to suggest next; None when all three are already strong."""
    if all(levels.get(m, 0) >= 2 for m in _NEXT_STEP_ORDER):
        return None
    return min(_NEXT_STEP_ORDER, key=lambda m: (levels.get(m, 0), _NEXT_STEP_ORDER.index(m)))


def next_step(levels: Mapping[Mechanism, float]) -> tuple[Mechanism | None, str]:
    mechanism = weakest_mechanism(levels)
    if mechanism is None:
        return None, _ALL_STRONG_STEP
    without_it, weak = _NEXT_STEPS[mechanism]
    return mechanism, (weak if levels.get(mechanism, 0) >= 1 else without_it)


def _praise_lines(reply: ReplyForCoaching) -> tuple[list[str], list[Mechanism]]:
    lines: list[str] = []
    praised: list[Mechanism] = []
    quoted: list[str] = []
    for mechanism in (Mechanism.EMOTIONAL_REACTIONS, Mechanism.INTERPRETATIONS, Mechanism.EXPLORATIONS):
        level = reply.levels.get(mechanism, 0)
        if level < 1:
            continue
        shows, article = _WHAT_IT_SHOWS[mechanism]
        strength = "a strong " if level >= 2 else f"{article} "
        name = mechanism.display_name.removesuffix("s")  # one of them: "a strong Emotional Reaction"
        quote = best_quote(
            reply.spans.get(mechanism, ()), reply.reply_text, mechanism=mechanism, avoid=quoted
        )
        if quote:
            quoted.append(quote)
            lines.append(f"• “{escape_markdown(quote)}” {shows} — {strength}{name}.")
        else:
            lines.append(f"• Your reply {shows} — {strength}{name}.")
        praised.append(mechanism)
    return lines, praised


def compose_note(reply: ReplyForCoaching) -> CoachingNote:
    """The coaching DM for one reply."""
    praise, praised = _praise_lines(reply)
    parts = ["**Thanks for replying in the support channel.**"]
    if praise:
        parts.append("Here is what your reply did well:\n" + "\n".join(praise))
    else:
        parts.append("Showing up for someone matters, and your reply did that.")
    step_for, step = next_step(reply.levels)
    parts.append(f"**One thing to try:** {step}")
    if reply.jump_url:
        parts.append(f"Your reply: {reply.jump_url}")
    parts.append(FOOTER)
    return CoachingNote(text=_fit("\n\n".join(parts)), praised=tuple(praised), next_step_for=step_for)


def compose_digest(replies: Sequence[ReplyForCoaching]) -> CoachingNote:
    """One note for several waiting replies: a line each (up to a few), then one shared next step."""
    if not replies:
        raise ValueError("a digest needs at least one reply")
    shown = replies[:DIGEST_MAX_ITEMS]
    lines = []
    praised: set[Mechanism] = set()
    for number, reply in enumerate(shown, start=1):
        praise, mechanisms = _praise_lines(reply)
        praised.update(mechanisms)
        link = f" ({reply.jump_url})" if reply.jump_url else ""
        body = praise[0][2:] if praise else "Thanks for showing up for someone."
        lines.append(f"**{number}.**{link} {body}")
    if len(replies) > len(shown):
        lines.append(f"…and {len(replies) - len(shown)} more.")
    average = {
        m: sum(r.levels.get(m, 0) for r in replies) / len(replies)
        for m in (Mechanism.EMOTIONAL_REACTIONS, Mechanism.INTERPRETATIONS, Mechanism.EXPLORATIONS)
    }
    step_for, step = next_step(average)
    text = "\n\n".join(
        [
            f"**You wrote {len(replies)} replies in the support channels since my last note.** "
            "Here is what each did well:",
            "\n".join(lines),
            f"**One thing to try across them:** {step}",
            FOOTER,
        ]
    )
    ordered = tuple(m for m in _NEXT_STEP_ORDER[::-1] if m in praised)
    return CoachingNote(text=_fit(text), praised=ordered, next_step_for=step_for)


def compose_invitation(guild_name: str) -> str:
    """First contact: what PeerCare does, in a few lines, before any coaching is sent."""
    return _fit(
        f"Hi! The moderators of **{escape_markdown(guild_name)}** use PeerCare in their support channels.\n\n"
        "When you reply to someone there, I can send you a short private note: what your reply did well "
        "(quoting your own words) and one idea to try next, based on research on empathy in peer support. "
        "Only you see these notes, at most one every so often, and you can stop them any time with "
        "`/peercare coaching off`.\n\n"
        "Would you like these notes?"
    )


def compose_first_contact(guild_name: str, note: CoachingNote) -> str:
    """The first note in a guild where coaching is on by default: who is writing and how to stop, then the note."""
    intro = (
        f"Hi! The moderators of **{escape_markdown(guild_name)}** use PeerCare to send responders short private "
        "notes about their replies in the support channels. Only you see them. Here is your first one; "
        "use the buttons below (or `/peercare coaching on|off`) to keep or stop them."
    )
    return _fit(intro + "\n\n" + note.text)


def _fit(text: str) -> str:
    if len(text) <= DISCORD_MESSAGE_LIMIT:
        return text
    return text[: DISCORD_MESSAGE_LIMIT - 1] + "…"
