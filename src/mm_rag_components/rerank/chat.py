"""The generator protocol of the listwise reranker: chat turns (text and images) in, text out.

A generator needs ``generate(turns) -> str``. It may also offer

* ``async agenerate(turns) -> str`` — a native async call (a remote LLM client);
* a ``stop_event`` keyword on ``generate`` — a :class:`threading.Event` the reranker sets when
  the call has timed out, so a local model stops at its next token instead of running on;
* ``accepts_images`` — ``False`` for text-only models (candidates' images are then described,
  not shown, and flagged).

Implementations: :class:`~mm_rag_components.rerank.generators.TransformersGenerator` (local) and
one per framework under ``integrations/`` (LlamaIndex, Haystack, LangChain LLMs).
"""

from __future__ import annotations

import asyncio
import inspect
import io
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, Union, runtime_checkable

from ..errors import ConfigError, ModelError, one_line

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

Part = Union[str, "Image.Image"]
T = TypeVar("T")

#: Flags of a call that gave no answer.
FLAG_TIMEOUT = "timeout"
FLAG_GENERATOR_ERROR = "generator_error"


@dataclass(frozen=True)
class ChatTurn:
    """One chat message: a role (``system``/``user``/``assistant``) and text or image parts."""

    role: str
    parts: tuple[Part, ...]

    @property
    def text(self) -> str:
        """The text parts joined (images left out)."""
        return "\n".join(p for p in self.parts if isinstance(p, str))

    @property
    def images(self) -> list["Image.Image"]:
        return [p for p in self.parts if not isinstance(p, str)]


@runtime_checkable
class ListwiseGenerator(Protocol):
    """Anything that answers chat turns with text (see the module docstring for the extras)."""

    def generate(self, turns: Sequence[ChatTurn]) -> str: ...


IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")


def check_image_format(image_format: object) -> str:
    """``image_format`` upper-cased, or a :class:`ConfigError` unless PNG, JPEG or WEBP."""
    if not isinstance(image_format, str) or image_format.upper() not in IMAGE_FORMATS:
        raise ConfigError(f"image_format must be PNG, JPEG or WEBP, got {image_format!r}")
    return image_format.upper()


def encode_image(image: "Image.Image", image_format: str = "PNG") -> tuple[bytes, str]:
    """Encode a PIL image for a chat API; returns the bytes and their MIME type."""
    image_format = check_image_format(image_format)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **({"quality": 90} if image_format == "JPEG" else {}))
    return buffer.getvalue(), f"image/{image_format.lower()}"


def generator_for(llm: Any, generator: Any, wrap: Callable[..., Any], llm_options: dict[str, Any], *, llm_name: str = "llm") -> Any:
    """The generator a framework adapter hands the core: ``wrap(llm, **llm_options)`` for a
    framework LLM, else ``generator`` (the two together, or LLM options without an LLM, are a
    :class:`ConfigError`). ``llm_options`` holds only the options the user gave."""
    if llm is None:
        if llm_options:
            raise ConfigError(f"{', '.join(sorted(llm_options))} apply only with {llm_name}=")
        return generator
    if generator is not None:
        raise ConfigError(f"give {llm_name} or generator, not both")
    return wrap(llm, **llm_options)


def takes_stop_event(generator: Any) -> bool:
    """True when ``generator.generate`` accepts a ``stop_event`` keyword."""
    try:
        return "stop_event" in inspect.signature(generator.generate).parameters
    except (TypeError, ValueError):
        return False


def native_async(generator: Any) -> Callable[..., Any] | None:
    """The generator's ``agenerate`` when it is a coroutine function, else ``None``."""
    agenerate = getattr(generator, "agenerate", None)
    return agenerate if agenerate is not None and inspect.iscoroutinefunction(agenerate) else None


def generated_text(value: object) -> str:
    """A generator's answer as text: ``None`` → ``""``; ``.text`` / ``.content`` unwrapped.

    May raise whatever the object's ``str()`` raises; callers treat that as a generator error.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    for attribute in ("text", "content"):
        inner = getattr(value, attribute, None)
        if isinstance(inner, str):
            return inner
    return str(value)


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


__all__ = [
    "generator_for",
    "IMAGE_FORMATS",
    "check_image_format",
    "encode_image",
    "FLAG_GENERATOR_ERROR",
    "FLAG_TIMEOUT",
    "GeneratorCall",
    "acall_generator",
    "call_generator",
    "ChatTurn",
    "ListwiseGenerator",
    "Part",
    "generated_text",
    "in_daemon_thread",
    "native_async",
    "takes_stop_event",
]
