"""Made-up support-channel conversations for the benchmark: a realistic mix of lengths, several replies per parent.

Every text is generated from the short invented fragments below; no dataset text is used.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from inference.types import ReplyScoreRequest

log = logging.getLogger(__name__)

_SEEKER_FRAGMENTS = (
    "I have been feeling really low for the past few weeks",
    "my exams are next week and I can't focus on anything",
    "I moved to a new city and I don't know anyone here",
    "my partner and I keep arguing about the same things",
    "I can't sleep and my thoughts keep racing at night",
    "work has been overwhelming and I feel like I'm failing",
    "I don't know who else to talk to about this",
    "some days I just stay in bed and can't get up",
    "my family doesn't understand what I'm going through",
    "I started therapy but I'm not sure it's helping",
    "everything feels pointless lately",
    "I keep comparing myself to everyone else",
    "I lost my job last month and I'm scared about money",
    "my best friend stopped replying to my messages",
    "I feel anxious every time I have to leave the house",
)
_REPLY_FRAGMENTS = (
    "that sounds really hard",
    "I'm sorry you're going through this",
    "have you been able to talk to anyone close to you",
    "it seems like you're carrying a lot right now",
    "what has helped you in the past when things felt like this",
    "I went through something similar last year",
    "you're not alone in feeling this way",
    "maybe try writing your thoughts down before bed",
    "it makes sense that you feel overwhelmed",
    "I'm proud of you for reaching out",
    "do you want to tell us more about what happened",
    "taking small steps is still progress",
    "sending you a hug",
    "ok",
    "same here honestly",
)


@dataclass(frozen=True)
class Conversation:
    parent_id: int
    parent_text: str
    replies: tuple[tuple[int, str], ...]


def _text(rng: random.Random, fragments: tuple[str, ...], words: int) -> str:
    parts: list[str] = []
    count = 0
    while count < words:
        fragment = rng.choice(fragments)
        parts.append(fragment)
        count += len(fragment.split())
    text = ". ".join(part[0].upper() + part[1:] for part in parts) + "."
    return " ".join(text.split()[: max(1, words)]) if words < count else text


def make_conversations(parents: int, *, seed: int = 0, id_offset: int = 0) -> list[Conversation]:
    """Parents of 8-160 words (most 20-60), each with 1-7 replies of 1-90 words (most short)."""
    rng = random.Random(seed)
    conversations = []
    next_id = id_offset + 1
    for _ in range(parents):
        parent_words = int(min(160, max(8, rng.lognormvariate(3.6, 0.6))))
        parent_id, next_id = next_id, next_id + 1
        replies = []
        for _ in range(rng.choice((1, 2, 2, 3, 3, 3, 4, 4, 5, 7))):
            reply_words = int(min(90, max(1, rng.lognormvariate(2.8, 0.8))))
            replies.append((next_id, _text(rng, _REPLY_FRAGMENTS, reply_words)))
            next_id += 1
        conversations.append(
            Conversation(parent_id, _text(rng, _SEEKER_FRAGMENTS, parent_words), tuple(replies))
        )
    return conversations


def reply_requests(
    conversations: list[Conversation], *, shuffle_seed: int | None = 1
) -> list[ReplyScoreRequest]:
    """One request per reply; shuffled so replies to one parent arrive spread out, as in a busy channel."""
    requests = [
        ReplyScoreRequest(c.parent_id, c.parent_text, reply_id, reply_text)
        for c in conversations
        for reply_id, reply_text in c.replies
    ]
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(requests)
    return requests
