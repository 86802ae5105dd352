"""Plain services the cogs call: they know Discord ids, never discord.py objects."""
