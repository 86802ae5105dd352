"""Discord ids and time: a snowflake's top bits are milliseconds since Discord's epoch (no discord.py needed)."""

from __future__ import annotations

from datetime import UTC, datetime

DISCORD_EPOCH_MS = 1_420_070_400_000
_LOW_BITS = 22


def snowflake_time(snowflake: int) -> datetime:
    """When the object with this id was created (UTC)."""
    return datetime.fromtimestamp(((snowflake >> _LOW_BITS) + DISCORD_EPOCH_MS) / 1000, tz=UTC)


def time_snowflake(moment: datetime, *, high: bool = False) -> int:
    """The lowest (or, ``high``, the highest) id Discord could give an object created at ``moment``."""
    milliseconds = int(moment.timestamp() * 1000 - DISCORD_EPOCH_MS)
    return (milliseconds << _LOW_BITS) + ((1 << _LOW_BITS) - 1 if high else 0)
