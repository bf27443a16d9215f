"""Await with a time limit, without losing a cancellation.

``asyncio.wait_for`` before Python 3.12 swallows the cancellation of its caller when the awaited
thing finishes at the same moment (the caller then runs on, and whoever cancelled it waits):
nested time limits — a stream's per-chunk limit inside an answer's overall one — hang that way.
:func:`wait_at_most` never swallows one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def wait_at_most(awaitable: Awaitable[T], seconds: float | None) -> T:
    """The result of ``awaitable``, or ``asyncio.TimeoutError`` after ``seconds`` (``None``: no
    limit); then it is cancelled and awaited (so it can close what it opened)."""
    if seconds is None:
        return await awaitable
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=max(0.0, seconds))
    except BaseException:  # our caller is cancelled: so is the work, and the cancellation goes on
        task.cancel()
        raise
    if done:
        return task.result()
    task.cancel()
    await asyncio.wait({task})  # raises only if *we* are cancelled meanwhile
    if not task.cancelled():
        task.exception()  # retrieved: a failure while being cancelled is not what the caller hears of
    raise asyncio.TimeoutError


__all__ = ["wait_at_most"]
