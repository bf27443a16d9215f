"""An answer as it is generated: :class:`AnswerStream`, and reading a sync stream of pieces in a
daemon thread — for an event loop (:func:`threaded`) or within a time limit (:func:`within`)."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Callable, TypeVar

from .aio import wait_at_most
from .errors import ConfigError, ModelError, one_line
from .generation.calls import FLAG_TIMEOUT

T = TypeVar("T")


class _Late(Exception):
    """The stream outlived its ``timeout``."""


class AnswerStream:
    """Iterate the answer's text as it is generated; :attr:`answer` holds the :class:`Answer` once
    the iteration is over. A generator failing mid-stream ends the stream with the answer flagged
    ``generator_error`` (what was streamed is kept); a ``ModelError`` is raised. With ``timeout``
    (seconds, from the first read), a stream still running then is left (a local model is told to
    stop) and the answer is flagged ``timeout``, what was streamed kept.

    Iterate it with ``for`` (a sync source) or ``async for`` (either: a sync source is read in a
    worker thread, see :meth:`MultimodalAnswerer.astream`)."""

    def __init__(self, pieces: Iterator[str] | AsyncIterator[str], finish: Callable[[str, str | None], Any],
                 timeout: float | None = None) -> None:
        self._pieces = pieces
        self._finish = finish
        self._timeout = timeout
        self._parts: list[str] = []
        self.answer: Any = None  # the Answer, once the iteration is over

    def __iter__(self) -> Iterator[str]:
        if not isinstance(self._pieces, Iterator):
            raise ConfigError("this answer streams asynchronously: use `async for`")
        pieces = self._pieces if self._timeout is None else within(self._pieces, self._timeout)
        error = late = None
        try:
            for piece in pieces:
                yield self._keep(piece)
        except _Late:
            late = f"the answer took longer than timeout={self._timeout:g} s"
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - a backend failure ends the stream, flagged
            error = one_line(exc)
        self._done(error, late)

    async def __aiter__(self) -> AsyncIterator[str]:
        pieces = self._pieces if isinstance(self._pieces, AsyncIterator) else threaded(self._pieces)
        end = None if self._timeout is None else time.monotonic() + self._timeout
        error = late = None
        try:
            while True:
                try:
                    piece = await wait_at_most(anext(pieces), None if end is None else end - time.monotonic())
                except StopAsyncIteration:
                    break
                yield self._keep(piece)
        except asyncio.TimeoutError:
            late = f"the answer took longer than timeout={self._timeout:g} s"
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - a backend failure ends the stream, flagged
            error = one_line(exc)
        finally:
            closing = getattr(pieces, "aclose", None)
            if closing is not None:
                await closing()
        self._done(error, late)

    def _done(self, error: str | None, late: str | None) -> None:
        self.answer = self._finish("".join(self._parts), error or late)
        if late is not None and error is None:
            self.answer.flag = FLAG_TIMEOUT

    def _keep(self, piece: object) -> str:
        text = str(piece)
        self._parts.append(text)
        return text


def _pump(pieces: Iterator[T], put: Callable[[tuple[str, Any]], None]) -> threading.Event:
    """Read ``pieces`` in a daemon thread, handing ``("piece", p)`` to ``put`` for each, then
    ``("end", None)`` or ``("error", exc)``; set the returned event to make it stop after the
    current piece. ``pieces`` is closed at the end (a local model then stops)."""
    stop = threading.Event()

    def work() -> None:
        try:
            for piece in pieces:
                if stop.is_set():
                    break
                put(("piece", piece))
            outcome: tuple[str, Any] = ("end", None)
        except BaseException as exc:  # noqa: BLE001 - handed to the reader
            outcome = ("error", exc)
        finally:
            close = getattr(pieces, "close", None)
            if callable(close):
                close()
        put(outcome)

    threading.Thread(target=work, name="mm-rag-stream-reader", daemon=True).start()
    return stop


def _unpack(kind: str, value: Any) -> bool:
    """True for a piece, False at the end; raises a reader's error."""
    if kind == "error":
        raise value
    return kind == "piece"


def within(pieces: Iterator[T], timeout: float) -> Iterator[T]:
    """``pieces`` read in a daemon thread; :class:`_Late` once ``timeout`` seconds have passed
    (the thread then closes ``pieces`` after its current piece: a local model stops)."""
    end = time.monotonic() + timeout
    box: queue.Queue[tuple[str, Any]] = queue.Queue()
    stop = _pump(pieces, box.put)
    try:
        while True:
            try:
                kind, value = box.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise _Late from None
            if not _unpack(kind, value):
                return
            yield value
    finally:
        stop.set()


async def threaded(pieces: Iterator[T]) -> AsyncIterator[T]:
    """A sync iterator (a local model streaming) read in a daemon thread, piece by piece, so the
    event loop never waits on it; leaving early closes it (a local model then stops)."""
    loop = asyncio.get_running_loop()
    box: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def put(item: tuple[str, Any]) -> None:
        try:
            loop.call_soon_threadsafe(box.put_nowait, item)
        except RuntimeError:  # the loop closed: nobody is reading
            pass

    stop = _pump(pieces, put)
    try:
        while True:
            kind, value = await box.get()
            if not _unpack(kind, value):
                return
            yield value
    finally:
        stop.set()


__all__ = ["AnswerStream", "threaded", "within"]
