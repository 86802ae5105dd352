"""The traffic the Discord load run offers: seeker posts and replies in several channels, in sending order.

Ordinary posts and replies come from ``bench.messages`` (made-up fragments, no dataset text). Crisis posts
are the rows of ``tests/data/risk_discord_style.csv`` marked ``needs_moderator=1`` (invented test rows that the
shipped risk model puts in the high tier); they replace the text of every ``crisis_every``-th post.
"""

from __future__ import annotations

import csv
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from bench.messages import make_conversations

log = logging.getLogger(__name__)

CRISIS_ROWS = Path(__file__).resolve().parent.parent / "tests" / "data" / "risk_discord_style.csv"
# Replies come this long (seconds of the schedule) after their post, at random: a channel's conversations overlap.
REPLY_DELAY_S = (0.3, 4.0)


@dataclass(frozen=True, slots=True)
class Planned:
    """One message to offer: a seeker post, or a reply to the post of conversation ``conversation``."""

    kind: str  # "post" | "reply"
    conversation: int
    channel: int  # index into the run's support channels
    author: int  # index into the run's seekers (posts) or responders (replies)
    text: str
    crisis: bool = False


def crisis_texts(path: Path = CRISIS_ROWS) -> list[str]:
    """The invented crisis posts that must reach moderators."""
    with path.open(newline="", encoding="utf-8") as handle:
        return [row["text"] for row in csv.DictReader(handle) if row["needs_moderator"].strip() == "1"]


def plan_traffic(
    replies: int,
    *,
    channels: int,
    seekers: int,
    responders: int,
    crisis_every: int = 8,
    seed: int = 0,
) -> list[Planned]:
    """At least ``replies`` replies with their posts, in an order a busy server could send them.

    Each conversation's post is offered before any of its replies; replies follow it by a random delay, so
    conversations in one channel interleave. Posts take channels and seekers round-robin; a reply's author is
    a random responder. Every ``crisis_every``-th post (0: none) is a crisis post.
    """
    rng = random.Random(seed)
    crisis = crisis_texts() if crisis_every else []
    timed: list[tuple[float, int, Planned]] = []
    planned_replies = 0
    conversation = 0
    while planned_replies < replies:
        for found in make_conversations(64, seed=seed * 7919 + conversation):
            if planned_replies >= replies:
                break
            channel = conversation % channels
            is_crisis = bool(crisis) and conversation % crisis_every == crisis_every - 1
            text = crisis[(conversation // crisis_every) % len(crisis)] if is_crisis else found.parent_text
            # One time unit per conversation; the schedule's real spacing is set when it is offered.
            posted = float(conversation)
            timed.append(
                (
                    posted,
                    len(timed),
                    Planned("post", conversation, channel, conversation % seekers, text, crisis=is_crisis),
                )
            )
            for _, reply_text in found.replies[: replies - planned_replies]:
                at = posted + rng.uniform(*REPLY_DELAY_S)
                author = rng.randrange(responders)
                timed.append((at, len(timed), Planned("reply", conversation, channel, author, reply_text)))
                planned_replies += 1
            conversation += 1
    timed.sort()
    return [planned for _, _, planned in timed]
