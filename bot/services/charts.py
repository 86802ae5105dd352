"""Draw empathy-level trends as PNG images (matplotlib, Agg backend, off the event loop), briefly cached."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import matplotlib

matplotlib.use("Agg")  # no display on a server; set before anything imports pyplot

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bot.services.stats import LevelPoint
from inference.types import Mechanism

log = logging.getLogger(__name__)

SERIES = (
    (Mechanism.EMOTIONAL_REACTIONS, "#d9534f"),
    (Mechanism.INTERPRETATIONS, "#0275d8"),
    (Mechanism.EXPLORATIONS, "#5cb85c"),
)
# A chart asked for again (the same trend, the same title) within this long is not drawn again.
CACHE_TTL_S = 300.0
CACHE_MAX_ENTRIES = 128


def render_level_trend(points: Sequence[LevelPoint], title: str) -> bytes:
    """A line per mechanism (mean level 0-2 per day) over a bar of replies per day. Returns PNG bytes."""
    # A Figure without pyplot keeps no global state, so concurrent renders in threads are safe.
    figure = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    days = [point.day for point in points]
    if points:
        counts = axes.twinx()
        counts.bar(days, [p.replies for p in points], color="#cccccc", alpha=0.5, width=0.8, label="replies")
        counts.set_ylabel("replies per day")
        axes.set_zorder(counts.get_zorder() + 1)
        axes.patch.set_visible(False)
        for mechanism, colour in SERIES:
            levels = [p.level(mechanism) for p in points]
            axes.plot(days, levels, marker="o", label=mechanism.display_name, color=colour)
        axes.legend(loc="upper left")
        figure.autofmt_xdate()
    else:
        axes.text(0.5, 0.5, "No scored replies yet", ha="center", va="center", transform=axes.transAxes)
    axes.set_ylim(-0.05, 2.05)
    axes.set_yticks([0, 1, 2], ["none", "weak", "strong"])
    axes.set_ylabel("mean level")
    # The title holds a guild name: drawn as typed, never parsed as mathtext ("Save $$ Support" would fail).
    axes.set_title(title, parse_math=False)
    axes.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


class ChartCache:
    """Recently drawn charts by what they show: a repeated `/peercare me` or `stats` is not drawn again.

    Keyed by the title and the points themselves, so a cached chart is never out of date; entries expire after
    ``ttl_s`` and the oldest go first beyond ``max_entries``.
    """

    def __init__(
        self,
        *,
        ttl_s: float = CACHE_TTL_S,
        max_entries: int = CACHE_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            stored_at, png = found
            if self._clock() - stored_at > self.ttl_s:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return png

    def put(self, key: Hashable, png: bytes) -> None:
        with self._lock:
            self._entries[key] = (self._clock(), png)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


_cache = ChartCache()


async def render_level_trend_async(points: Sequence[LevelPoint], title: str) -> bytes:
    """``render_level_trend`` in a worker thread (drawing takes long enough to stall the gateway), cached."""
    key = (title, tuple(points))
    png = _cache.get(key)
    if png is None:
        png = await asyncio.to_thread(render_level_trend, list(points), title)
        _cache.put(key, png)
    return png
