"""The generator protocol: chat turns (text and images) in, text out.

Used by the answer stage and the listwise reranker alike. A generator needs
``generate(turns) -> str``. It may also offer

* ``async agenerate(turns) -> str`` — a native async call (a remote LLM client);
* a ``stop_event`` keyword on ``generate`` — a :class:`threading.Event` the caller sets when
  the call has timed out, so a local model stops at its next token instead of running on;
* ``stream(turns)`` / ``astream(turns)`` — the answer piece by piece;
* ``accepts_images`` — ``False`` for text-only models (images are then described, not shown,
  and flagged).

Implementations: :class:`~mm_rag_components.generation.transformers.TransformersGenerator`
(local), :class:`~mm_rag_components.remote.OpenAIChatGenerator` (an OpenAI-compatible server)
and one per framework under ``integrations/`` (LlamaIndex, Haystack, LangChain LLMs).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Union, runtime_checkable

from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

Part = Union[str, "Image.Image"]


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
class Generator(Protocol):
    """Anything that answers chat turns with text (see the module docstring for the extras)."""

    def generate(self, turns: Sequence[ChatTurn]) -> str: ...


#: The protocol's former name (it was the listwise reranker's first); use :class:`Generator`.
ListwiseGenerator = Generator


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


__all__ = ["ChatTurn", "Generator", "ListwiseGenerator", "Part", "generated_text", "generator_for", "native_async", "takes_stop_event"]
