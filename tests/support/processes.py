"""Child processes in tests: never left running when a test fails."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T", str, bytes)


@contextlib.contextmanager
def killed_on_exit(process: subprocess.Popen[T]) -> Iterator[subprocess.Popen[T]]:
    """``process``, killed (and its pipes drained) on leaving the block if it is still running then."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
