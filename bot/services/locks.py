"""Per-key asyncio locks in a weak table: one lock per message, case or member, gone once nobody holds it."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Hashable
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


class KeyedLocks(weakref.WeakValueDictionary[K, asyncio.Lock]):
    """``locks[key]``-style table whose ``of(key)`` creates the lock on first use."""

    def of(self, key: K) -> asyncio.Lock:
        lock = self.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self[key] = lock
        return lock
