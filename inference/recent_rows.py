"""Model outputs for recently seen inputs, kept by digest: a burst judged again as it grows pays only for its new parts.

A member's burst is re-judged with every message it gains (bot/services/bursts.py): "i can't do this anymore" /
"like really" / "the pills are right here" is scored as one line, then two, then three. Most of what the models
read the third time (the crisis head's two-line pieces, the risk model's leading token windows) they already read
the second time. Keeping those outputs makes a burst's cost grow with its new words, not with its length.

Keys are 16-byte BLAKE2b digests of the input (text or token ids): no text or token is kept, only numbers.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def text_key(text: str) -> bytes:
    return digest(text.encode("utf-8", "surrogatepass"))


def token_key(ids: Sequence[int]) -> bytes:
    return digest(np.asarray(ids, dtype=np.int64).tobytes())


class RecentRows:
    """The ``size`` most recently used rows, by key; safe to share between threads (the worker's pool)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a cache of recent rows needs room for at least one row")
        self.size = size
        self._rows: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def rows(self, keys: Sequence[bytes], compute: Callable[[list[int]], np.ndarray]) -> np.ndarray:
        """Row ``i`` for ``keys[i]``. ``compute(positions)`` returns the rows of those positions, in that order; it
        is called once, with the first position of each key not held (a key repeated in ``keys`` is computed
        once); with no ``keys`` it is asked for none, which gives the rows' empty shape."""
        if not keys:
            return compute([])
        found: dict[int, np.ndarray] = {}
        missing: dict[bytes, list[int]] = {}
        with self._lock:
            for position, key in enumerate(keys):
                row = self._rows.get(key)
                if row is None:
                    missing.setdefault(key, []).append(position)
                else:
                    self._rows.move_to_end(key)
                    found[position] = row
            self.hits += len(found)
            self.misses += len(missing)
        fresh = compute([positions[0] for positions in missing.values()]) if missing else None
        if fresh is not None and len(fresh) != len(missing):
            raise ValueError(f"computed {len(fresh)} rows for {len(missing)} inputs")
        with self._lock:
            for (key, positions), row in zip(
                missing.items(), fresh if fresh is not None else [], strict=True
            ):
                stored = np.array(row, copy=True)
                self._rows[key] = stored
                for position in positions:
                    found[position] = stored
            while len(self._rows) > self.size:
                self._rows.popitem(last=False)
        return np.stack([found[position] for position in range(len(keys))])

    def __len__(self) -> int:
        return len(self._rows)
