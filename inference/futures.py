"""Ending futures and tasks: settle the future coalesced requests share, stop a background task for good."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


def settle(future: asyncio.Future[Any], outcome: object) -> None:
    """Answer ``future`` with ``outcome``: an exception is raised to its waiters, anything else is their result.

    A future answered already (a resubmitted request's first answer, a caller's cancellation) keeps that answer:
    a late second answer is not an error.
    """
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has stopped, so nothing it still does outlives a ``close``.

    Its CancelledError is the expected end, not a failure, so it is not raised to the closer.
    """
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
