"""The reliability suite (load, faults, bad input, security): end-to-end tests that also run alone with -m reliability."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sqlite_write_lock import WriteLock


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e/reliability carries the ``reliability`` marker."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture
def write_lock(e2e_database_url: str) -> Iterator[WriteLock]:
    """SQLite's write lock, held from another connection when a test says so (database fault tests)."""
    lock = WriteLock(Path(e2e_database_url.removeprefix("sqlite+aiosqlite:///")))
    yield lock
    lock.release()
