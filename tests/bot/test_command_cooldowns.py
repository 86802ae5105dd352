"""Cooldown answers say when a member may try again in one wording, for commands and the check-in note form."""

from __future__ import annotations

import pytest
from discord import app_commands

from bot.command_cooldowns import cooldown_message, wait_wording
from cogs.checkins import _note_cooldown_message


@pytest.mark.parametrize(
    ("retry_after", "wording"),
    [
        (0.2, "1 second"),
        (44.1, "45 seconds"),
        (119.0, "119 seconds"),
        (121.0, "3 minutes"),
        (600.0, "10 minutes"),
    ],
)
def test_wait_wording_is_seconds_then_minutes(retry_after: float, wording: str) -> None:
    assert wait_wording(retry_after) == wording


def test_command_and_note_cooldowns_share_the_wording() -> None:
    error = app_commands.CommandOnCooldown(app_commands.Cooldown(1, 60.0), 300.0)
    assert cooldown_message(error).endswith("try again in 5 minutes.")
    assert "another note in 5 minutes;" in _note_cooldown_message(300.0, "Call 988.")
