"""Discord extensions, one per feature area. Thin: Discord in, Discord out; the work is in bot/services."""
