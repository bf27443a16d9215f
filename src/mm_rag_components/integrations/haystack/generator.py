"""Any Haystack chat generator as a listwise generator: our chat turns become ``ChatMessage`` s
whose user turn interleaves ``TextContent`` and ``ImageContent`` parts (OpenAI, Azure, Ollama,
Google, Hugging Face … chat generators of Haystack and its integrations)."""

from __future__ import annotations

import base64
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from haystack.dataclasses import ChatMessage, ImageContent

from ...errors import BackendError, ConfigError
from ...generation.base import ChatTurn
from ...generation.images import check_image_format, encode_image
from ...validate import boolean


class HaystackChatGenerator:
    """Answer chat turns with ``chat_generator.run(messages=[...])`` → ``{"replies": [ChatMessage]}``.

    When the chat generator has a native ``run_async``, :meth:`agenerate` awaits it (the listwise
    core then calls it concurrently, without threads); otherwise the core runs :meth:`generate`
    in a worker thread. ``generation_kwargs`` go to every call; ``image_format`` is how images are
    encoded; ``accepts_images=False`` for a text-only model (candidate images are then described).

    Saving: :meth:`config` leaves the chat generator out — Haystack serialises it itself
    (see :class:`~mm_rag_components.integrations.haystack.ListwiseReranker`); pass
    ``chat_generator=`` when rebuilding from a config by hand.
    """

    def __init__(
        self,
        chat_generator: Any,
        *,
        image_format: str = "PNG",
        generation_kwargs: Mapping[str, Any] | None = None,
        accepts_images: bool = True,
    ) -> None:
        if not callable(getattr(chat_generator, "run", None)):
            raise ConfigError(
                "chat_generator must be a Haystack chat generator with run(messages=...), "
                f"got {type(chat_generator).__name__}"
            )
        if generation_kwargs is not None and not isinstance(generation_kwargs, Mapping):
            raise ConfigError(f"generation_kwargs must be a mapping, got {type(generation_kwargs).__name__}")
        self.chat_generator = chat_generator
        self.image_format = check_image_format(image_format)
        self.generation_kwargs = dict(generation_kwargs or {})
        self.accepts_images = boolean("accepts_images", accepts_images)
        model = getattr(chat_generator, "model", None)
        self.name = model if isinstance(model, str) and model else type(chat_generator).__name__
        if inspect.iscoroutinefunction(getattr(chat_generator, "run_async", None)):
            self.agenerate = self._agenerate  # the core looks for a native coroutine ``agenerate``

    def config(self) -> dict[str, Any]:
        return {
            "image_format": self.image_format,
            "generation_kwargs": self.generation_kwargs,
            "accepts_images": self.accepts_images,
        }

    @classmethod
    def from_config(cls, chat_generator: Any = None, **options: Any) -> HaystackChatGenerator:
        if chat_generator is None:
            raise ConfigError(
                "HaystackChatGenerator: the chat generator is saved by Haystack, not in this config; "
                "load the ListwiseReranker component, or pass chat_generator= when rebuilding"
            )
        return cls(chat_generator, **options)

    def warm_up(self) -> None:
        warm = getattr(self.chat_generator, "warm_up", None)
        if callable(warm):
            warm()

    def to_messages(self, turns: Sequence[ChatTurn]) -> list[ChatMessage]:
        """Our chat turns as Haystack ``ChatMessage`` s (images as ``ImageContent`` parts, in order)."""
        messages = []
        for turn in turns:
            if turn.role == "system":
                messages.append(ChatMessage.from_system(turn.text))
            elif turn.role == "assistant":
                messages.append(ChatMessage.from_assistant(turn.text))
            else:
                messages.append(ChatMessage.from_user(content_parts=[self._part(p) for p in turn.parts]))
        return messages

    def _part(self, part: Any) -> str | ImageContent:
        if isinstance(part, str):
            return part
        data, mime = encode_image(part, self.image_format)
        return ImageContent(base64_image=base64.b64encode(data).decode("ascii"), mime_type=mime, validation=False)

    def _kwargs(self) -> dict[str, Any]:
        return {"generation_kwargs": self.generation_kwargs} if self.generation_kwargs else {}

    def generate(self, turns: Sequence[ChatTurn]) -> str:
        return _reply_text(self.chat_generator.run(messages=self.to_messages(turns), **self._kwargs()))

    async def _agenerate(self, turns: Sequence[ChatTurn]) -> str:
        return _reply_text(await self.chat_generator.run_async(messages=self.to_messages(turns), **self._kwargs()))


def _reply_text(result: Any) -> str:
    replies = result.get("replies") if isinstance(result, Mapping) else None
    if not replies:
        raise BackendError(f"the chat generator returned no replies: {result!r:.200}")
    text = getattr(replies[0], "text", None)
    if not isinstance(text, str):
        raise BackendError(f"the chat generator's reply has no text: {replies[0]!r:.200}")
    return text


__all__ = ["HaystackChatGenerator"]
