"""A briefly locked or unreachable database: whole units of work are re-run with backoff, and the log says so."""

from __future__ import annotations

import errno
import logging
import socket
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from bot.db import session as db_session
from bot.db.session import Database, transient_reason

pytestmark = pytest.mark.reliability

log = logging.getLogger(__name__)


@contextmanager
def write_lock(path: Path, release_after: float | None = None) -> Iterator[None]:
    """Another process holds SQLite's write lock (BEGIN EXCLUSIVE) until the block ends or ``release_after``."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")
    released = threading.Lock()

    def release() -> None:
        with released:
            if other.in_transaction:
                other.execute("COMMIT")

    timer = threading.Timer(release_after, release) if release_after is not None else None
    if timer is not None:
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()
        release()
        other.close()


@pytest.fixture
async def notes(tmp_path: Path, fast_retries: None) -> AsyncIterator[tuple[Database, Path]]:
    path = tmp_path / "notes.db"
    database = Database(f"sqlite+aiosqlite:///{path}")
    async with database.session() as session:
        await session.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
    yield database, path
    await database.close()


async def _count(database: Database) -> int:
    async with database.session() as session:
        return int(await session.scalar(text("SELECT count(*) FROM notes")) or 0)


async def test_a_unit_of_work_is_rerun_until_the_lock_is_released(notes, caplog):
    database, path = notes
    calls = 0

    async def add_note(session):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        await session.execute(text("INSERT INTO notes (body) VALUES (:body)"), {"body": "private words"})
        return calls

    with caplog.at_level(logging.WARNING, logger="bot.db.session"), write_lock(path, release_after=0.4):
        attempts = await database.run("add note 7", add_note)
    assert attempts >= 2 and await _count(database) == 1
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert retries[0].startswith(
        "database unavailable (database is locked) during add note 7: attempt 1 of 4 failed"
    )
    assert "private words" not in caplog.text


async def test_run_gives_up_after_the_last_attempt_and_the_error_propagates(notes, caplog):
    database, path = notes
    calls = 0

    async def add_note(session):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        await session.execute(text("INSERT INTO notes (body) VALUES ('x')"))

    locked = write_lock(path)
    with caplog.at_level(logging.WARNING, logger="bot.db.session"), locked, pytest.raises(OperationalError):
        await database.run("add note 8", add_note)
    assert calls == db_session.RETRY_ATTEMPTS
    assert "during add note 8: giving up after 4 attempts" in caplog.text
    assert await _count(database) == 0


async def test_an_error_that_is_not_transient_is_not_retried(notes):
    database, _path = notes
    calls = 0

    async def add_twice(session):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        await session.execute(text("INSERT INTO notes (id, body) VALUES (1, 'a')"))
        await session.execute(text("INSERT INTO notes (id, body) VALUES (1, 'b')"))

    with pytest.raises(IntegrityError):
        await database.run("add a duplicate", add_twice)
    assert calls == 1 and await _count(database) == 0


async def test_a_failed_attempt_leaves_nothing_behind(notes):
    database, _path = notes
    calls = 0

    async def two_rows(session):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        await session.execute(text("INSERT INTO notes (body) VALUES ('first')"))
        if calls == 1:
            # The second write of the first attempt hits a lock taken by someone else meanwhile.
            raise OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
        await session.execute(text("INSERT INTO notes (body) VALUES ('second')"))

    await database.run("add two notes", two_rows)
    assert calls == 2 and await _count(database) == 2


async def test_session_says_when_a_lock_rolled_its_work_back(notes, caplog):
    database, path = notes
    locked = write_lock(path)
    with caplog.at_level(logging.WARNING, logger="bot.db.session"), locked, pytest.raises(OperationalError):
        async with database.session() as session:
            await session.execute(text("INSERT INTO notes (body) VALUES ('x')"))
    assert (
        "database unavailable (database is locked): a unit of work was rolled back (OperationalError)"
        in caplog.text
    )


async def test_a_statement_that_waited_for_a_lock_is_logged_without_its_parameters(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(db_session, "SLOW_STATEMENT_S", 0.2)
    path = tmp_path / "slow.db"
    database = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with database.session() as session:
            await session.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
        with caplog.at_level(logging.WARNING, logger="bot.db.session"), write_lock(path, release_after=0.5):
            async with database.session() as session:
                await session.execute(text("INSERT INTO notes (body) VALUES (:body)"), {"body": "secret"})
        assert await _count(database) == 1
    finally:
        await database.close()
    (line,) = [r.getMessage() for r in caplog.records if "waited" in r.getMessage()]
    assert line.startswith("database busy: a INSERT on notes waited")
    assert "secret" not in caplog.text


class _DriverError(Exception):
    """Shaped like asyncpg's errors as SQLAlchemy adapts them: a ``sqlstate``."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"server said {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked")),
            "database is locked",
        ),
        (OperationalError("SELECT 1", {}, _DriverError("08006")), "PostgreSQL SQLSTATE 08006"),
        (OperationalError("SELECT 1", {}, _DriverError("40P01")), "PostgreSQL SQLSTATE 40P01"),
        (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
        (ConnectionResetError(104, "Connection reset by peer"), "connection reset"),
        (OSError(errno.ETIMEDOUT, "Connect call timed out"), "connection error (ETIMEDOUT)"),
        (PoolTimeout("QueuePool limit of size 5 overflow 10 reached"), "connection pool exhausted"),
    ],
)
def test_transient_errors_are_recognised(error, reason):
    assert transient_reason(error) == reason


@pytest.mark.parametrize(
    "error",
    [
        IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed")),
        OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: notes")),
        OperationalError("SELECT", {}, _DriverError("42P01")),  # undefined table: retrying cannot help
        ValueError("the database is locked, says a user's message"),
    ],
)
def test_lasting_errors_are_not_taken_for_transient(error):
    assert transient_reason(error) is None


async def test_an_unreachable_postgresql_server_is_retried_then_the_error_propagates(fast_retries, caplog):
    with (
        socket.socket() as probe
    ):  # a port nothing listens on: connection refused, as when PostgreSQL is down
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    database = Database(f"postgresql+asyncpg://peercare:secret@127.0.0.1:{port}/peercare")
    try:
        with caplog.at_level(logging.WARNING, logger="bot.db.session"), pytest.raises(OSError):
            await database.run("read settings of guild 5", lambda session: session.scalar(text("SELECT 1")))
    finally:
        await database.close()
    assert (
        "database unavailable (connection refused) during read settings of guild 5: attempt 3 of 4 failed"
        in caplog.text
    )
    assert "giving up after 4 attempts" in caplog.text
    assert "secret" not in caplog.text
