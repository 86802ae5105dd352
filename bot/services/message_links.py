"""Where a Discord message lives on the web: one rule for the jump links in alerts, DMs and digests."""

from __future__ import annotations


def jump_url(guild_id: int, channel_id: int, message_id: int) -> str:
    """The link that opens ``message_id`` in its channel (Discord's own format; no API call, no markup)."""
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"
