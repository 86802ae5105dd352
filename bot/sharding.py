"""Discord sharding: which shards this process runs, and the one rule for which guilds it owns.

Discord sends a guild's events to one shard only: ``(guild_id >> 22) % shard_count``. PeerCare gives the periodic
and recovering work of a guild (escalation sweeps, inbox recovery, catch-up, retention, guild-leave deletion,
check-ins) to the process running that shard, so each runs exactly once across the fleet without any lock
(docs/architecture.md, "Several processes"). :class:`GuildOwnership` is that rule, in Python and in SQL.

``SHARD_COUNT`` / ``SHARD_IDS`` (bot.settings) choose the shards:

* both empty: one process, one gateway connection, as always (Discord allows it up to 2500 guilds);
* ``SHARD_COUNT=N``: one process runs all N shards (discord.py's ``AutoShardedBot``); ``SHARD_COUNT=auto``: as
  many as Discord recommends (``GET /gateway/bot``);
* ``SHARD_COUNT=N`` and ``SHARD_IDS=0-1`` (or ``0,2``): this process runs those shards only; the other
  processes run the rest, on the same PostgreSQL database.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from sqlalchemy import ColumnElement, literal, true

# A snowflake's low 22 bits are worker, process and increment; the rest is the timestamp Discord shards by.
SNOWFLAKE_TIMESTAMP_SHIFT = 22
AUTO = "auto"
_SHARD_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard that receives ``guild_id``'s events (Discord's formula)."""
    return (guild_id >> SNOWFLAKE_TIMESTAMP_SHIFT) % shard_count


def parse_shard_ids(text: str) -> tuple[int, ...]:
    """``"0-1"`` -> (0, 1); ``"0,2"`` -> (0, 2); ``"0-2,5"`` -> (0, 1, 2, 5). Raises ValueError when malformed."""
    ids: set[int] = set()
    for part in text.split(","):
        if not part.strip():
            raise ValueError("must be shard ids such as 0-1 or 0,2 (an empty item)")
        found = _SHARD_RANGE.match(part)
        if found:
            first, last = int(found[1]), int(found[2])
            if first > last:
                raise ValueError(f"must be shard ids such as 0-1 or 0,2 ({part.strip()} is backwards)")
            ids.update(range(first, last + 1))
        elif part.strip().isdigit():
            ids.add(int(part))
        else:
            raise ValueError(f"must be shard ids such as 0-1 or 0,2 (not {part.strip()!r})")
    return tuple(sorted(ids))


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    """What this process connects: ``count`` None = Discord's recommendation; ``ids`` None = every shard."""

    count: int | None
    ids: tuple[int, ...] | None
    sharded: bool  # False: a plain single connection (no SHARD_* setting), today's default

    @classmethod
    def from_settings(cls, shard_count: int | str | None, shard_ids: tuple[int, ...] | None) -> ShardPlan:
        if shard_count is None and shard_ids is None:
            return cls(None, None, sharded=False)
        count = None if shard_count in (None, AUTO) else int(shard_count)
        return cls(count, shard_ids, sharded=True)

    @property
    def is_subset(self) -> bool:
        """This process runs only some of the shards: other processes must share its database."""
        return self.ids is not None and self.count is not None and set(self.ids) != set(range(self.count))

    def bot_options(self) -> dict[str, Any]:
        """Keyword arguments for discord.py's ``AutoShardedBot`` (empty when not sharded)."""
        if not self.sharded:
            return {}
        options: dict[str, Any] = {"shard_count": self.count}
        if self.ids is not None:
            options["shard_ids"] = list(self.ids)
        return options

    def ownership(self) -> GuildOwnership:
        if self.is_subset:
            assert self.count is not None and self.ids is not None
            return GuildOwnership(self.count, frozenset(self.ids))
        return GuildOwnership.everything()


@dataclasses.dataclass(frozen=True)
class GuildOwnership:
    """The guilds whose periodic work this process does: those its shards receive. ``count`` 0: every guild."""

    shard_count: int
    shard_ids: frozenset[int]

    @classmethod
    def everything(cls) -> GuildOwnership:
        return cls(0, frozenset())

    @property
    def owns_all(self) -> bool:
        return self.shard_count == 0

    def owns(self, guild_id: int) -> bool:
        return self.owns_all or shard_of(guild_id, self.shard_count) in self.shard_ids

    def where(self, guild_id_column: Any) -> ColumnElement[bool]:
        """The same rule as a SQL condition on a guild id column (``true()`` when this process owns all).

        ``(guild_id // 2**22) % count IN (ids)``: integer division and modulo behave alike on SQLite and
        PostgreSQL for the non-negative BIGINT snowflakes.
        """
        if self.owns_all:
            return true()
        divisor = literal(1 << SNOWFLAKE_TIMESTAMP_SHIFT)
        shard = (guild_id_column // divisor) % literal(self.shard_count)
        return shard.in_(sorted(self.shard_ids))
