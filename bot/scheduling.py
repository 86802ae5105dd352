"""Periodic and start-up jobs: one way to add one to the bot's APScheduler, take it off, and let it finish."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from apscheduler.schedulers.base import BaseScheduler


def every(
    scheduler: BaseScheduler,
    job_id: str,
    seconds: float,
    run: Callable[[], Awaitable[Any]],
    *,
    first_at: datetime | None = None,
) -> None:
    """Run ``run`` every ``seconds``: one instance at a time, missed runs coalesced, the same id replaced."""
    options: dict[str, Any] = {"next_run_time": first_at} if first_at is not None else {}
    scheduler.add_job(
        run,
        "interval",
        seconds=seconds,
        id=job_id,
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        **options,
    )


def stop(scheduler: BaseScheduler, job_id: str) -> None:
    """Take a periodic job off (nothing happens when it is not there)."""
    if scheduler.get_job(job_id) is not None:
        scheduler.remove_job(job_id)


async def finish_or_cancel(task: asyncio.Task[None] | None, grace_seconds: float) -> None:
    """At unload: let a running start-up task finish within ``grace_seconds``, then cancel it."""
    if task is None or task.done():
        return
    _done, pending = await asyncio.wait({task}, timeout=grace_seconds)
    for left in pending:
        left.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await left


async def run_logged(
    log: logging.Logger, what: str, run: Callable[[], Awaitable[Any]], *, again_in_s: float
) -> None:
    """One pass of a job that runs again every ``again_in_s``: a failure is logged, never raised.

    The next pass is the retry. ``log`` is the caller's logger, so the record names the job's own module.
    """
    try:
        await run()
    except Exception:
        log.exception("%s failed; it runs again in %d s", what, again_in_s)


async def run_scheduled(
    log: logging.Logger, what: str, run: Callable[[], Awaitable[Any]], *, again_in_s: float
) -> None:
    """``run_logged`` for a pass the scheduler started: a shutdown that cancels it is not an error either.

    Only for jobs whose every step is its own transaction, so that the next start simply runs them again.
    """
    try:
        await run_logged(log, what, run, again_in_s=again_in_s)
    except asyncio.CancelledError:
        log.info("%s interrupted by shutdown", what)
