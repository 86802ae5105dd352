"""Discord snowflake ids: increasing, unique, with a real timestamp so discord.py's created_at makes sense."""

from __future__ import annotations

import itertools
import logging
import time

log = logging.getLogger(__name__)

DISCORD_EPOCH_MS = 1_420_070_400_000


class SnowflakeFactory:
    """Hands out snowflakes in strictly increasing order (a counter fills the low bits)."""

    def __init__(self, worker_id: int = 1) -> None:
        self._worker_id = worker_id & 0x1F
        self._counter = itertools.count()
        self._last = 0

    def next(self) -> int:
        millis = int(time.time() * 1000) - DISCORD_EPOCH_MS
        candidate = (millis << 22) | (self._worker_id << 17) | (next(self._counter) & 0xFFF)
        # Several ids in one millisecond, or a clock step back, must still increase.
        self._last = max(candidate, self._last + 1)
        return self._last

    def next_on_shard(self, shard_id: int, shard_count: int) -> int:
        """The next id whose guild would live on ``shard_id`` of ``shard_count`` (``(id >> 22) % count``).

        The timestamp moves forward by at most ``shard_count - 1`` ms to land there; ids still increase.
        """
        candidate = self.next()
        millis = candidate >> 22
        millis += (shard_id - millis) % shard_count
        self._last = max(self._last, (millis << 22) | (candidate & 0x3FFFFF))
        return self._last


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard that receives ``guild_id``'s events, as Discord computes it."""
    return (guild_id >> 22) % shard_count


def created_seconds(snowflake: int) -> float:
    """The creation time encoded in a snowflake, in ``time.time()`` seconds."""
    return ((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000


def iso_timestamp(snowflake: int) -> str:
    """The ISO-8601 creation time encoded in a snowflake, as Discord writes timestamps."""
    seconds = ((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        + f".{int(seconds * 1000) % 1000:03d}000+00:00"
    )


def now_iso() -> str:
    now = time.time()
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        + f".{int(now * 1_000_000) % 1_000_000:06d}+00:00"
    )
