"""A per-case time limit for generated tests: a hang fails the case instead of the suite."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any


class CaseTimeout(BaseException):
    """Raised by :func:`time_limit`; a BaseException so no ``except Exception`` in the code under
    test can swallow it."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail the case when it runs longer than ``seconds`` (SIGALRM: main thread only, which is
    where pytest runs tests)."""

    def expire(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"case ran longer than {seconds}s (hang?)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
