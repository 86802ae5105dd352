"""PeerCare: the Discord bot process — settings, start-up, database and the services the cogs call."""

__version__ = "0.1.0"
