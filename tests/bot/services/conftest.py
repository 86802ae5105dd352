"""Fixtures shared by the service tests (a migrated SQLite file, a scripted inference client)."""

from tests.bot.services.responder_fixtures import database, inference

__all__ = ["database", "inference"]
