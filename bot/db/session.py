"""The one way into the database: an async engine and a session factory, one session per unit of work.

A database can be briefly locked (SQLite: another process holds the write lock) or unreachable (PostgreSQL
restarting, a reset connection). Two layers deal with that:

- SQLite's own busy handler waits up to ``SQLITE_BUSY_TIMEOUT_MS`` for a lock inside each statement; a
  statement that had to wait long is logged (``SLOW_STATEMENT_S``), so a lock is never silent.
- ``Database.run`` re-runs a whole unit of work on a transient error, with exponential backoff, logging a
  WARNING per retry that names the operation and the attempt. Re-running is safe because a failed
  transaction is rolled back: nothing of the failed attempt remains. After the last attempt the error
  propagates and the caller's own recovery (the escalation sweep, the message inbox) picks the work up.

``Database.session()`` cannot re-run the body of an ``async with`` block, so it does not retry; it only says
clearly, in a WARNING, when a transient error rolled a unit of work back.
"""

from __future__ import annotations

import errno
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# SQLite's busy handler retries a locked statement by itself for this long before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 5000
# Whole-transaction retries in ``Database.run``: attempts in all, and the backoff between them.
RETRY_ATTEMPTS = 4
RETRY_FIRST_WAIT_S = 0.25
RETRY_MAX_WAIT_S = 2.0
# A statement that took this long was almost always waiting for a lock: say so.
SLOW_STATEMENT_S = 1.0

_SQLITE_BUSY_MESSAGES = ("database is locked", "database table is locked", "database is busy")
# PostgreSQL SQLSTATEs worth re-running a transaction for: serialization failure, deadlock, connection
# exceptions (class 08), the server shutting down or starting up.
_PG_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "57P01", "57P02", "57P03"})
_CONNECTION_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE, errno.ETIMEDOUT}
)
_TABLE = re.compile(r"\b(?:INTO|UPDATE|FROM)\s+\"?(\w+)", re.IGNORECASE)


def transient_reason(exc: BaseException) -> str | None:
    """Why ``exc`` is a passing database problem worth re-running a transaction for, or None if it is not.

    Looks through the exception chain (SQLAlchemy wraps the driver's error in ``orig``). Only ever returns a
    fixed phrase or an SQLSTATE, never the statement or its parameters (they can hold message text).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return "connection lost"
        if isinstance(current, PoolTimeout):
            # Every pooled connection stayed busy for the pool's timeout (overload, a long lock): passing.
            return "connection pool exhausted"
        message = str(current).lower()
        for busy in _SQLITE_BUSY_MESSAGES:
            if busy in message and _is_driver_error(current):
                return busy
        sqlstate = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(sqlstate, str) and (sqlstate in _PG_TRANSIENT_SQLSTATES or sqlstate.startswith("08")):
            return f"PostgreSQL SQLSTATE {sqlstate}"
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
            return "connection reset"
        if isinstance(current, OSError) and current.errno in _CONNECTION_ERRNOS:
            return f"connection error ({errno.errorcode.get(current.errno or 0, current.errno)})"
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return None


def _is_driver_error(exc: BaseException) -> bool:
    """A database driver's error (or SQLAlchemy's wrapper of one), not any exception that mentions a lock."""
    return isinstance(exc, DBAPIError) or type(exc).__name__ in ("OperationalError", "DatabaseError")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the scheduler and the event handlers write without "database is locked";
    # foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_MS)}")
    cursor.close()


def _sqlite_begin_before_savepoint(conn: Any, _name: str) -> None:
    # Python's sqlite3 driver sends BEGIN only just before the first INSERT/UPDATE/DELETE, so a unit of work
    # that has only read so far is not yet in a transaction in SQLite. A SAVEPOINT there opens the
    # transaction itself, and its RELEASE then COMMITS it: a row written in a nested block (get_or_create)
    # would be saved even when the unit of work later fails and rolls back. Opening the transaction first
    # keeps the savepoint nested, so the whole unit of work commits or rolls back together. Only here, not
    # at every begin: read-only units keep taking no lock, as before.
    if not conn.connection.driver_connection.in_transaction:
        conn.exec_driver_sql("BEGIN")


def _statement_started(conn: Any, _cursor: Any, _statement: str, *_args: Any) -> None:
    conn.info["peercare_statement_started"] = time.monotonic()


def _statement_finished(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
    started = conn.info.pop("peercare_statement_started", None)
    if started is None:
        return
    elapsed = time.monotonic() - started
    if elapsed >= SLOW_STATEMENT_S:
        # The verb and table only: parameters (and so message text) never reach the log.
        verb = statement.split(None, 1)[0].upper() if statement.strip() else "?"
        table = _TABLE.search(statement)
        log.warning(
            "database busy: a %s on %s waited %.1f s (locked by another connection, or overloaded)",
            verb,
            table.group(1) if table else "?",
            elapsed,
        )


def _log_retry(operation: str, state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    log.warning(
        "database unavailable (%s) during %s: attempt %d of %d failed; retrying in %.2f s",
        transient_reason(exc) if exc is not None else "error",
        operation,
        state.attempt_number,
        RETRY_ATTEMPTS,
        wait,
    )


def _warn_if_transient(exc: BaseException, message: str, *args: object) -> None:
    """Where a unit of work is finally given up, say when an outage (not a bug) was the cause.

    ``message`` takes the transient reason first, then ``args``.
    """
    reason = transient_reason(exc)
    if reason is not None:
        log.warning(message, reason, *args)


class Database:
    """Owns the engine; hands out sessions. Close it once, at shutdown."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        # hide_parameters: SQLAlchemy's error messages quote a failed statement's parameters, which can be a
        # member's message text, and errors are logged with their tracebacks.
        self.engine: AsyncEngine = create_async_engine(
            url, echo=echo, pool_pre_ping=True, hide_parameters=True
        )
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "savepoint", _sqlite_begin_before_savepoint)
        event.listen(self.engine.sync_engine, "before_cursor_execute", _statement_started)
        event.listen(self.engine.sync_engine, "after_cursor_execute", _statement_finished)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits on success and rolls back on error (no retry: see ``run``)."""
        try:
            async with self._sessions() as session, session.begin():
                yield session
        except Exception as exc:
            _warn_if_transient(
                exc,
                "database unavailable (%s): a unit of work was rolled back (%s); its caller retries or parks it",
                type(exc).__name__,
            )
            raise

    async def run(self, operation: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``work(session)`` as one transaction; re-run all of it if the database was briefly unavailable.

        ``operation`` names the work in logs ("mark escalation 12 alerted"): ids only, never message text.
        ``work`` must only touch the database (no Discord sends, no other side effects), because it may run
        more than once. On PostgreSQL a connection lost during COMMIT leaves it unknown whether the commit
        landed, so ``work`` should also be idempotent (check before insert), as the escalation steps are.
        After ``RETRY_ATTEMPTS`` attempts the last error propagates.
        """
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda exc: transient_reason(exc) is not None),
            stop=stop_after_attempt(RETRY_ATTEMPTS),
            wait=wait_exponential_jitter(
                multiplier=RETRY_FIRST_WAIT_S, max=RETRY_MAX_WAIT_S, jitter=RETRY_FIRST_WAIT_S
            ),
            before_sleep=lambda state: _log_retry(operation, state),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    async with self._sessions() as session, session.begin():
                        result = await work(session)
        except Exception as exc:
            _warn_if_transient(
                exc,
                "database unavailable (%s) during %s: giving up after %d attempts; the work is left for its sweep",
                operation,
                RETRY_ATTEMPTS,
            )
            raise
        return result

    async def close(self) -> None:
        await self.engine.dispose()
