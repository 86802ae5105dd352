"""An InferenceClient wrapper that counts what a load run reports: requests in flight, answers, sheds.

It wraps the bot's real client (the worker backend by default) and changes nothing it returns or raises,
so the bot runs exactly as it would without it. "In flight" is every request the bot is awaiting: queued in
the worker, in the batch being scored, or waiting for room in the worker's bounded queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from inference.client import InferenceClient
from inference.errors import RequestShed
from inference.types import ReplyScore, ReplyScoreRequest, RiskScore, RiskScoreRequest

log = logging.getLogger(__name__)


@dataclass
class InferenceMeter:
    """What the bot asked of its models and what came back, by message id, with monotonic times."""

    in_flight: int = 0
    replies_scored: dict[int, float] = field(default_factory=dict)  # reply id -> time answered
    replies_shed: dict[int, float] = field(default_factory=dict)
    posts_scored: dict[int, float] = field(default_factory=dict)  # seeker post id -> time its risk came
    failures: Counter[str] = field(default_factory=Counter)  # exception type -> count
    # Reply requests by priority: "risk" ones carry their parent's first risk score and are never shed.
    reply_priorities: Counter[str] = field(default_factory=Counter)
    failed_ids: set[int] = field(default_factory=set)

    def answered(self, message_id: int) -> bool:
        """The bot has a final answer for this message: scored, shed, or failed."""
        return (
            message_id in self.replies_scored
            or message_id in self.replies_shed
            or message_id in self.posts_scored
            or message_id in self.failed_ids
        )

    @contextlib.contextmanager
    def awaiting(self, message_id: int, *, sheddable: bool = False) -> Iterator[None]:
        """One request the bot awaits, counted in flight until it returns or raises.

        Only coaching replies may be shed, and a shed reply is an answer, not a failure; risk is never shed,
        so a ``RequestShed`` from a risk call counts as the failure it would be.
        """
        self.in_flight += 1
        try:
            yield
        except Exception as exc:
            if sheddable and isinstance(exc, RequestShed):
                self.replies_shed[message_id] = time.monotonic()
            else:
                self.failures[type(exc).__name__] += 1
                self.failed_ids.add(message_id)
            raise
        finally:
            self.in_flight -= 1


class MeteredInference:
    """Delegates every call to ``inner`` and records it in ``meter``."""

    def __init__(self, inner: InferenceClient) -> None:
        self.inner = inner
        self.meter = InferenceMeter()

    @property
    def ready(self) -> bool:
        return self.inner.ready

    @property
    def pid(self) -> int | None:
        """The worker process's id (None for a backend without one)."""
        return getattr(self.inner, "pid", None)

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def wait_ready(self, timeout: float) -> None:  # noqa: ASYNC109
        """Until the models are loaded (the worker reports READY)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.inner.ready:
            if loop.time() > deadline:
                raise TimeoutError(f"the inference models were not ready after {timeout:g}s")
            await asyncio.sleep(0.1)

    async def score_reply(self, request: ReplyScoreRequest) -> ReplyScore:
        self.meter.reply_priorities[request.priority.name.lower()] += 1
        with self.meter.awaiting(request.reply_id, sheddable=True):
            result = await self.inner.score_reply(request)
        self.meter.replies_scored[request.reply_id] = time.monotonic()
        # A reply's request carries its parent's risk: the post counts as risk-scored too.
        self.meter.posts_scored.setdefault(request.parent_id, time.monotonic())
        return result

    async def score_risk(self, request: RiskScoreRequest) -> RiskScore:
        with self.meter.awaiting(request.message_id):
            result = await self.inner.score_risk(request)
        self.meter.posts_scored.setdefault(request.message_id, time.monotonic())
        return result
