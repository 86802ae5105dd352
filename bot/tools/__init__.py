"""Command-line tools that use the bot's services without Discord (`peercare score`, `peercare replay`)."""
