"""Settling the future that every caller of one in-flight request waits on (coalesced requests share it)."""

from __future__ import annotations

import asyncio
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
