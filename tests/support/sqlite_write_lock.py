"""Hold SQLite's write lock from another connection, as a second process (or a slow writer) would."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path


class WriteLock:
    """SQLite's write lock held by another connection (thread-safe: a timer may release it).

    ``take`` is idempotent (the first call wins); ``then`` (SQL) runs on that connection just before it commits,
    e.g. to change a row behind the bot's back while it waited.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None
        self._mutex = threading.Lock()
        self.then: str | None = None
        self.taken_at: float | None = None
        self.released_at: float | None = None

    @property
    def taken(self) -> bool:
        return self.taken_at is not None

    def take(self, hold_s: float | None = None) -> None:
        """Take the lock now; with ``hold_s``, a timer releases it that much later."""
        with self._mutex:
            if self.taken_at is not None:
                return
            self._connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._connection.execute("BEGIN EXCLUSIVE")
            self.taken_at = time.monotonic()
        if hold_s is not None:
            threading.Timer(hold_s, self.release).start()

    def release(self) -> None:
        with self._mutex:
            if self._connection is None:
                return
            if self.then is not None:
                self._connection.execute(self.then)
            self._connection.execute("COMMIT")
            self._connection.close()
            self._connection = None
            self.released_at = time.monotonic()
