"""Per-member cooldowns for the commands that cost real work (a chart drawn, every table read)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import discord
from discord import app_commands

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Cooldown:
    """At most ``rate`` uses per ``per_s`` seconds, per member (across servers)."""

    rate: int
    per_s: float


# `/peercare me` and `/peercare stats` draw a chart: a few looks a minute are plenty for a person.
CHART_COMMANDS = Cooldown(rate=3, per_s=60.0)
# `/peercare threshold-whatif` replays 90 days of stored scores (seconds on a busy server); a moderator trying
# a few thresholds in a row is expected, a loop is not.
REPLAY_COMMANDS = Cooldown(rate=5, per_s=60.0)


def _member(interaction: discord.Interaction) -> int:
    return interaction.user.id


def per_member(cooldown: Cooldown) -> Callable[[T], T]:
    """A check that refuses (``app_commands.CommandOnCooldown``) a member who used the command too often."""
    return app_commands.checks.cooldown(cooldown.rate, cooldown.per_s, key=_member)


def cooldown_message(error: app_commands.CommandOnCooldown) -> str:
    """The private answer to a member on cooldown: what happened and when they can try again."""
    return f"You used this command a moment ago; try again in {wait_wording(error.retry_after)}."


def wait_wording(retry_after: float) -> str:
    """How long until a member may try again, as a person says it: "45 seconds", "7 minutes".

    The one wording of every cooldown answer (commands here, the check-in note form in cogs/checkins.py).
    """
    wait_s = max(1, math.ceil(retry_after))
    if wait_s < 120:
        return "1 second" if wait_s == 1 else f"{wait_s} seconds"
    return f"{math.ceil(wait_s / 60)} minutes"
