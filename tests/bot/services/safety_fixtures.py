"""A migrated SQLite file per test, copied from one template migrated once per session (Alembic is the slow part)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.db.migrate import upgrade_database
from bot.db.session import Database


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("safety-db") / "template.db"
    upgrade_database(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(name="database")
async def safety_database(migrated_template: Path, tmp_path: Path) -> AsyncIterator[Database]:
    """The same schema the bot runs on (Alembic head), in a fresh file for each test."""
    path = tmp_path / "peercare.db"
    shutil.copyfile(migrated_template, path)
    db = Database(f"sqlite+aiosqlite:///{path}")
    yield db
    await db.close()
