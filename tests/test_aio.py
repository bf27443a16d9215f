"""wait_at_most: a time limit that never swallows a cancellation (asyncio.wait_for before 3.12
does, when the awaited thing finishes at the moment its caller is cancelled: nested limits hang)."""

from __future__ import annotations

import asyncio

import pytest

from mm_rag_components.aio import wait_at_most
from remote_support import finishes


async def _busy() -> None:
    """Work whose inner limited awaits finish all the time (the race that hangs wait_for)."""
    while True:
        await wait_at_most(asyncio.sleep(0.0005), 30)


@pytest.mark.parametrize("attempt", range(10))
def test_nested_limits_end_when_the_outer_one_does(attempt):
    async def run():
        with pytest.raises(asyncio.TimeoutError):
            await wait_at_most(_busy(), 0.05)
        return "ended"

    assert finishes(lambda: asyncio.run(run())) == "ended"


def test_results_errors_cancellation_and_cleanup():
    cleaned: list[str] = []

    async def slow() -> str:
        try:
            await asyncio.sleep(30)
            return "late"
        finally:
            cleaned.append("slow")

    async def failing() -> None:
        raise ValueError("boom")

    async def run():
        assert await wait_at_most(asyncio.sleep(0, "now"), 5) == "now"
        assert await wait_at_most(asyncio.sleep(0, "unbounded"), None) == "unbounded"
        with pytest.raises(ValueError, match="boom"):
            await wait_at_most(failing(), 5)
        with pytest.raises(asyncio.TimeoutError):
            await wait_at_most(slow(), 0.01)
        assert cleaned == ["slow"]  # cancelled and awaited: its finally ran
        caller = asyncio.ensure_future(wait_at_most(slow(), 30))
        await asyncio.sleep(0.01)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await asyncio.sleep(0)
        assert cleaned == ["slow", "slow"]  # the caller's cancellation reached the work
        return "ok"

    assert finishes(lambda: asyncio.run(run())) == "ok"
