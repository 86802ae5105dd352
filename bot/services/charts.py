"""Draw empathy-level trends as PNG images (matplotlib, Agg backend, off the event loop)."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display on a server; set before anything imports pyplot

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bot.services.stats import LevelPoint

log = logging.getLogger(__name__)

SERIES = (
    ("er", "Emotional Reactions", "#d9534f"),
    ("ip", "Interpretations", "#0275d8"),
    ("ex", "Explorations", "#5cb85c"),
)


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
        for attribute, label, colour in SERIES:
            axes.plot(days, [getattr(p, attribute) for p in points], marker="o", label=label, color=colour)
        axes.legend(loc="upper left")
        figure.autofmt_xdate()
    else:
        axes.text(0.5, 0.5, "No scored replies yet", ha="center", va="center", transform=axes.transAxes)
    axes.set_ylim(-0.05, 2.05)
    axes.set_yticks([0, 1, 2], ["none", "weak", "strong"])
    axes.set_ylabel("mean level")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


async def render_level_trend_async(points: Sequence[LevelPoint], title: str) -> bytes:
    """Same as ``render_level_trend`` in a worker thread: drawing takes long enough to stall the gateway."""
    return await asyncio.to_thread(render_level_trend, list(points), title)
