"""A shutdown that interrupts the coaching flush job is not an error: the next start flushes again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from bot.services import coaching_delivery
from cogs.coaching import FLUSH_JOB_ID

pytestmark = pytest.mark.e2e


class Hold:
    """Make ``module.<name>`` wait until released, remembering the task it holds (the running job)."""

    def __init__(self, module: object, name: str) -> None:
        self.module, self.name = module, name
        self.original = getattr(module, name)
        self.reached = asyncio.Event()
        self.task: asyncio.Task[object] | None = None

        async def held(*args: object, **kwargs: object) -> object:
            self.task = asyncio.current_task()
            self.reached.set()
            await asyncio.Event().wait()  # until cancelled

        setattr(module, name, held)

    def restore(self) -> None:
        setattr(self.module, self.name, self.original)


async def test_coaching_flush_interrupted_by_shutdown_logs_no_error(e2e):
    hold = Hold(coaching_delivery, "responders_with_queued_replies")
    try:
        e2e.bot.scheduler.get_job(FLUSH_JOB_ID).modify(next_run_time=datetime.now(UTC))
        await asyncio.wait_for(hold.reached.wait(), 10)
        assert hold.task is not None
        # What the end of the process does to a job still running after the bot closed: cancel its task.
        hold.task.cancel()
        await asyncio.wait([hold.task], timeout=10)
    finally:
        hold.restore()
    assert hold.task.done()
    assert [r.getMessage() for r in e2e.logged_errors()] == []
