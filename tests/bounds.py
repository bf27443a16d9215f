"""A hang guard for tests: a hang fails the test with a message instead of stalling the suite.

It is not a benchmark: the default limit is generous (minutes) so that a busy machine never trips
it; only a real hang (an endless loop, a deadlock, a super-linear blow-up) does. Timings belong in
``benchmarks/``.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

#: Seconds a guarded block may run before it counts as hung.
HANG_LIMIT = 120.0


class CaseTimeout(BaseException):
    """Raised by :func:`time_limit`; a BaseException so no ``except Exception`` in the code under
    test can swallow it."""


@contextlib.contextmanager
def time_limit(seconds: float = HANG_LIMIT) -> Iterator[None]:
    """Fail the block when it runs longer than ``seconds`` (SIGALRM: main thread only, which is
    where pytest runs tests)."""

    def expire(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"still running after {seconds:g} s: a hang (this is a hang guard, not a timing check)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
