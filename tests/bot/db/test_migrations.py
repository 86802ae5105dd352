"""Alembic migrations on a real database file: round trip and no drift from the models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from bot.db.migrate import downgrade_database, upgrade_database
from bot.db.models import Base


def _sync_url(async_url: str) -> str:
    return async_url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'peercare.db'}"
    url = os.environ.get("PEERCARE_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("PEERCARE_TEST_POSTGRES_URL is not set (CI starts a PostgreSQL server and sets it)")
    downgrade_database(url, "base")  # start from empty whatever an earlier run left
    return url


def _make_sync_engine(async_url: str):
    if async_url.startswith("postgresql+asyncpg"):
        # Inspect through asyncpg too, so the test needs no second driver.
        from sqlalchemy.ext.asyncio import create_async_engine

        return _AsyncInspectable(create_async_engine(async_url))
    return create_engine(_sync_url(async_url))


class _AsyncInspectable:
    """Runs the sync inspection/comparison code over an async engine's connection."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def run(self, fn):
        import asyncio

        async def go():
            async with self.engine.connect() as conn:
                return await conn.run_sync(fn)

        return asyncio.run(go())

    def dispose(self) -> None:
        import asyncio

        asyncio.run(self.engine.dispose())


def _with_connection(async_url: str, fn):
    engine = _make_sync_engine(async_url)
    try:
        if isinstance(engine, _AsyncInspectable):
            return engine.run(fn)
        with engine.connect() as conn:
            return fn(conn)
    finally:
        engine.dispose()


def test_migrations_round_trip_empty_to_head_to_base_to_head(database_url: str) -> None:
    model_tables = set(Base.metadata.tables)
    upgrade_database(database_url)
    assert _with_connection(database_url, lambda c: set(inspect(c).get_table_names())) >= model_tables
    downgrade_database(database_url, "base")
    assert _with_connection(database_url, lambda c: set(inspect(c).get_table_names())) <= {"alembic_version"}
    upgrade_database(database_url)
    assert _with_connection(database_url, lambda c: set(inspect(c).get_table_names())) >= model_tables


def test_models_and_migrations_do_not_drift(database_url: str) -> None:
    upgrade_database(database_url)

    def diff(connection):
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    assert _with_connection(database_url, diff) == []
