"""Calling a generator with a time limit, sync or async: an answer, or a flag saying why not."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import ModelError, one_line
from .base import ChatTurn, generated_text, native_async, takes_stop_event

T = TypeVar("T")

#: Flags of a call that gave no answer.
FLAG_TIMEOUT = "timeout"
FLAG_GENERATOR_ERROR = "generator_error"


def in_daemon_thread(fn: Callable[[], T], name: str = "mm-rag-worker") -> "asyncio.Future[T]":
    """Run ``fn`` in a daemon thread; an awaitable for its result.

    Unlike ``asyncio.to_thread`` (the loop's executor, which ``asyncio.run`` joins at shutdown),
    an abandoned call — after a timeout — keeps neither the event loop nor the process waiting.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def work() -> None:
        try:
            result, error = fn(), None
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop closed while we worked: nobody is waiting
            pass

    threading.Thread(target=work, name=name, daemon=True).start()
    return future


@dataclass
class GeneratorCall:
    """One generator call: the answer ``text``, or the ``flag`` and ``error`` that replace it."""

    text: str | None = None
    flag: str | None = None
    error: str | None = None
    #: A ``ModelError`` (the model cannot load): raised in the caller's thread, never a flag.
    fatal: BaseException | None = None


def _generate(generator: Any, turns: Sequence[ChatTurn], stop: threading.Event | None) -> str:
    """One call, its answer read as text (reading it may raise: then that is the call's error)."""
    if stop is not None and takes_stop_event(generator):
        return generated_text(generator.generate(turns, stop_event=stop))
    return generated_text(generator.generate(turns))


def _settle(call: Callable[[], str]) -> GeneratorCall:
    try:
        return GeneratorCall(text=call())
    except ModelError as exc:
        return GeneratorCall(fatal=exc)
    except Exception as exc:  # noqa: BLE001 - any backend failure is the call's flag
        return GeneratorCall(flag=FLAG_GENERATOR_ERROR, error=one_line(exc))


def _checked(call: GeneratorCall) -> GeneratorCall:
    if call.fatal is not None:
        raise call.fatal
    return call


def call_generator(generator: Any, turns: Sequence[ChatTurn], timeout: float | None) -> GeneratorCall:
    """Call ``generator`` synchronously, bounded by ``timeout`` seconds (``None``: unbounded).

    A timed-out call runs on in an abandoned daemon thread, told to stop through its
    ``stop_event`` when it takes one. Failures are flags; a ``ModelError`` is raised.
    """
    if timeout is None:
        return _checked(_settle(lambda: _generate(generator, turns, None)))
    stop = threading.Event()
    box: dict[str, GeneratorCall] = {}
    worker = threading.Thread(
        target=lambda: box.setdefault("call", _settle(lambda: _generate(generator, turns, stop))),
        name="mm-rag-generate",
        daemon=True,
    )
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        stop.set()
        return GeneratorCall(flag=FLAG_TIMEOUT, error=f"no answer within {timeout} s")
    return _checked(box.get("call") or GeneratorCall(flag=FLAG_GENERATOR_ERROR, error="the generator thread died"))


async def acall_generator(generator: Any, turns: Sequence[ChatTurn], timeout: float | None) -> GeneratorCall:
    """Async :func:`call_generator`: the generator's native ``agenerate`` when it has one, else
    its ``generate`` in a daemon thread (see :func:`in_daemon_thread`)."""
    native = native_async(generator)
    stop = threading.Event()

    async def answer() -> str:
        if native is not None:
            return generated_text(await native(turns))
        return await in_daemon_thread(lambda: _generate(generator, turns, stop), name="mm-rag-generate")

    try:
        return GeneratorCall(text=await asyncio.wait_for(answer(), timeout))
    except asyncio.TimeoutError:
        stop.set()
        return GeneratorCall(flag=FLAG_TIMEOUT, error=f"no answer within {timeout} s")
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - any backend failure is the call's flag
        return GeneratorCall(flag=FLAG_GENERATOR_ERROR, error=one_line(exc))


__all__ = ["FLAG_GENERATOR_ERROR", "FLAG_TIMEOUT", "GeneratorCall", "acall_generator", "call_generator", "in_daemon_thread"]
