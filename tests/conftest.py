"""Shared test configuration: keep every test offline and away from the developer's .env."""

from __future__ import annotations

import logging
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """Undo any test's ``configure_logging`` (CLI tests run ``bot.cli.main`` in-process).

    Its handler writes to the stderr pytest captured for that one test; left in place, every later test's
    log lines go to a closed file ("Logging error ... I/O operation on closed file").
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
