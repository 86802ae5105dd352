"""Fixtures shared by the bot's service and database tests."""

from __future__ import annotations

import pytest

from bot.db import session as db_session


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite gives up on a lock after 50 ms instead of 5 s, and retries wait about 0.1-0.3 s."""
    monkeypatch.setattr(db_session, "SQLITE_BUSY_TIMEOUT_MS", 50)
    monkeypatch.setattr(db_session, "RETRY_FIRST_WAIT_S", 0.1)
    monkeypatch.setattr(db_session, "RETRY_MAX_WAIT_S", 0.3)
