"""How many questions a web chat worker runs at once, and who waits.

``capacity`` questions run at the same time; up to ``queue`` more wait in line, first come first
served, and learn their place as it changes; anyone beyond that is turned away at once with
:class:`Busy` (the web app answers HTTP 503 with ``Retry-After``) — never a long silent wait.

Everything runs on one event loop (the web server's), so no lock is needed.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator

from ..errors import MMRagError
from ..validate import integer, positive_int

#: Retry-After bounds (seconds) and the guess before any question has finished.
MIN_RETRY_AFTER, MAX_RETRY_AFTER, FIRST_GUESS = 1, 120, 2.0


class Busy(MMRagError):
    """Every slot and every place in the queue is taken; ``retry_after`` is a wait, in seconds,
    after which a slot is likely free."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Ticket:
    """One question's place: running, or waiting in line (see :meth:`Admission.enter`)."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._moved = asyncio.Event()
        self.admitted = False
        self.released = False
        self.started: float | None = None

    @property
    def position(self) -> int:
        """1 for the first in line; 0 once running."""
        return 0 if self.admitted else self._admission._line.index(self) + 1

    async def wait(self) -> AsyncIterator[int]:
        """Yield this ticket's place in line each time it changes, until it may run (or was released)."""
        while not self.admitted and not self.released:
            yield self.position
            await self._moved.wait()
            self._moved.clear()

    def release(self) -> None:
        """Leave: free the slot (a finished question) or the place in line (a user who left).
        Releasing twice does nothing."""
        if not self.released:
            self.released = True
            self._admission._leave(self)


class Admission:
    """``capacity`` running questions and at most ``queue`` waiting ones (module docstring)."""

    def __init__(self, capacity: int, queue: int = 0) -> None:
        self.capacity = positive_int("capacity", capacity)
        self.queue = integer("queue", queue, minimum=0)
        self.running = 0
        self._line: deque[Ticket] = deque()
        self._seconds: float | None = None  # moving average of how long a question runs

    @property
    def waiting(self) -> int:
        return len(self._line)

    def enter(self) -> Ticket:
        """A ticket that runs now or waits in line; :class:`Busy` when the line is full."""
        ticket = Ticket(self)
        if self.running < self.capacity and not self._line:
            self._start(ticket)
        elif len(self._line) < self.queue:
            self._line.append(ticket)
        else:
            retry = self.retry_after()
            line = f" and {self.queue} waiting" if self.queue else ""
            raise Busy(f"the server is busy ({self.capacity} question(s) running{line}); try again in {retry} s", retry)
        return ticket

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the average question time × the line ahead ÷ capacity."""
        seconds = self._seconds if self._seconds is not None else FIRST_GUESS
        estimate = seconds * (len(self._line) + 1) / self.capacity
        return int(min(MAX_RETRY_AFTER, max(MIN_RETRY_AFTER, math.ceil(estimate))))

    def status(self) -> dict[str, int]:
        return {"capacity": self.capacity, "queue": self.queue, "running": self.running, "waiting": self.waiting}

    def _start(self, ticket: Ticket) -> None:
        self.running += 1
        ticket.admitted, ticket.started = True, time.monotonic()
        ticket._moved.set()

    def _leave(self, ticket: Ticket) -> None:
        if ticket.admitted:
            self.running -= 1
            if ticket.started is not None:
                took = time.monotonic() - ticket.started
                self._seconds = took if self._seconds is None else 0.8 * self._seconds + 0.2 * took
        else:
            self._line.remove(ticket)
            ticket._moved.set()
        while self._line and self.running < self.capacity:
            self._start(self._line.popleft())
        for waiting in self._line:  # everyone behind moved up
            waiting._moved.set()


__all__ = ["Busy", "Admission", "Ticket"]
