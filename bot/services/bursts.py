"""Bursts: a member's messages in one channel or thread, each within a few minutes of the last, judged as one.

"i can't do this anymore" / "like really" / "the pills are right here" says together what no line says alone.
The texts live here, in memory only, for as long as the burst is open (never in the database, never logged);
a deleted message leaves its burst at once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from inference.risk.burst_text import MAX_CHARS, MAX_MESSAGES, burst_text

# Open bursts kept at most (the least recently grown go first): memory stays bounded on a busy server.
MAX_OPEN = 10_000


class Author(Protocol):
    @property
    def guild_id(self) -> int: ...

    @property
    def channel_id(self) -> int: ...

    @property
    def author_id(self) -> int: ...

    @property
    def message_id(self) -> int: ...


@dataclass
class _Burst:
    last_at: datetime
    # message id -> (posted at, text), in the order they were posted.
    lines: dict[int, tuple[datetime, str]] = field(default_factory=dict)


class Bursts:
    """Open bursts by (guild, channel or thread, member); ``window`` 0 judges every message alone."""

    def __init__(self, window: timedelta) -> None:
        self.window = window
        self._open: OrderedDict[tuple[int, int, int], _Burst] = OrderedDict()

    def add(self, message: Author, posted_at: datetime, text: str) -> str:
        """Add a message to its author's burst (a new one after ``window`` of quiet); the burst's text.

        The text is the burst's messages up to this one joined with newlines, oldest first. Adding the same
        message again (it is added on arrival, then judged) changes nothing.
        """
        if self.window <= timedelta(0):
            return text
        key = (message.guild_id, message.channel_id, message.author_id)
        burst = self._open.get(key)
        if burst is None or abs(posted_at - burst.last_at) > self.window:
            burst = _Burst(last_at=posted_at)
            self._open[key] = burst
        burst.lines[message.message_id] = (posted_at, text)
        burst.last_at = max(burst.last_at, posted_at)
        self._open.move_to_end(key)
        self._trim(burst)
        while len(self._open) > MAX_OPEN:
            self._open.popitem(last=False)
        # Up to this message, in posting order (snowflake ids grow with time): a message judged late (its
        # arrival was recorded after a later one's, catch-up, a retry) is judged with what came before it only,
        # and always with its own words.
        before = [
            line for message_id, (_, line) in sorted(burst.lines.items()) if message_id < message.message_id
        ]
        return burst_text([*before, text])

    def _trim(self, burst: _Burst) -> None:
        # Memory only: twice what one judgement reads, so a message judged late still finds its lines.
        while len(burst.lines) > 2 * MAX_MESSAGES or (
            len(burst.lines) > 1 and sum(len(text) for _, text in burst.lines.values()) > 2 * MAX_CHARS
        ):
            del burst.lines[min(burst.lines)]

    def forget(self, message_ids: Iterable[int]) -> None:
        """Deleted messages leave their bursts (their text is not judged again or kept)."""
        gone = set(message_ids)
        for key, burst in list(self._open.items()):
            for message_id in gone & burst.lines.keys():
                del burst.lines[message_id]
            if not burst.lines:
                del self._open[key]

    def forget_member(self, guild_id: int | None, member_id: int) -> None:
        """Forget-me or a member leaving: their open bursts go (``guild_id`` None: every guild)."""
        for key in [k for k in self._open if k[2] == member_id and (guild_id is None or k[0] == guild_id)]:
            del self._open[key]

    def __len__(self) -> int:
        return len(self._open)
