"""How a member's burst reads to the risk models: one place for the rule, used by the bot and by evaluation.

A burst is a member's messages in one channel or thread, each within a few minutes of the last
(bot/services/bursts.py keeps them). It is judged as one text: its newest messages, oldest first, one a line.
"""

from __future__ import annotations

from collections.abc import Sequence

# A burst judged as one text holds at most this many messages / characters (the newest are kept).
MAX_MESSAGES = 12
MAX_CHARS = 4000


def burst_text(lines: Sequence[str]) -> str:
    """The text judged for a burst whose messages, oldest first, are ``lines`` (the last one is the newest and is
    always kept, however long)."""
    kept = list(lines[-MAX_MESSAGES:])
    while len(kept) > 1 and sum(len(line) for line in kept) > MAX_CHARS:
        kept.pop(0)
    return "\n".join(kept)
