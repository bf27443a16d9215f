"""Any LlamaIndex LLM as a listwise generator (OpenAI, Gemini, Anthropic, Ollama, vLLM … through
their LlamaIndex integrations): our chat turns become ``ChatMessage`` s with text and image blocks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, ImageBlock, MessageRole, TextBlock

from ...errors import BackendError, ConfigError
from ...generation.base import ChatTurn
from ...generation.images import check_image_format, encode_image


class LlamaIndexGenerator:
    """Answer chat turns with ``llm.chat`` / ``llm.achat`` (native async).

    Images travel as ``ImageBlock(image=<encoded bytes>)`` between ``TextBlock`` s, in prompt
    order. ``chat_kwargs`` are passed to every call (e.g. ``temperature=0``).
    """

    def __init__(self, llm: Any, *, image_format: str = "PNG", **chat_kwargs: Any) -> None:
        if not callable(getattr(llm, "chat", None)):
            raise ConfigError("llm must be a LlamaIndex LLM with a chat() method")
        self.llm = llm
        self.image_format = check_image_format(image_format)
        self.chat_kwargs = chat_kwargs
        self.name = str(getattr(getattr(llm, "metadata", None), "model_name", None) or type(llm).__name__)

    def config(self) -> dict[str, Any]:
        """The LLM is saved through LlamaIndex's own ``to_dict`` (secrets left out)."""
        to_dict = getattr(self.llm, "to_dict", None)
        if not callable(to_dict):
            raise ConfigError(f"{type(self.llm).__name__} cannot be saved (no to_dict); pass llm= when rebuilding")
        return {"llm": to_dict(), "image_format": self.image_format, **self.chat_kwargs}

    @classmethod
    def from_config(cls, llm: Any, **options: Any) -> "LlamaIndexGenerator":
        if isinstance(llm, dict):
            from llama_index.core.llms.loading import load_llm

            try:
                llm = load_llm(llm)
            except ValueError as exc:
                raise ConfigError(
                    f"LlamaIndex cannot rebuild LLM {llm.get('class_name')!r} from a dict ({exc}); "
                    "pass llm=your_llm when loading the config"
                ) from exc
        return cls(llm, **options)

    def to_messages(self, turns: Sequence[ChatTurn]) -> list[ChatMessage]:
        """Our chat turns as LlamaIndex ``ChatMessage`` s with text and image blocks."""
        messages = []
        for turn in turns:
            blocks: list[Any] = []
            for part in turn.parts:
                if isinstance(part, str):
                    blocks.append(TextBlock(text=part))
                else:
                    data, mimetype = encode_image(part, self.image_format)
                    blocks.append(ImageBlock(image=data, image_mimetype=mimetype))
            messages.append(ChatMessage(role=MessageRole(turn.role), blocks=blocks))
        return messages

    def generate(self, turns: Sequence[ChatTurn]) -> str:
        return _response_text(self.llm.chat(self.to_messages(turns), **self.chat_kwargs))

    async def agenerate(self, turns: Sequence[ChatTurn]) -> str:
        return _response_text(await self.llm.achat(self.to_messages(turns), **self.chat_kwargs))

    def stream(self, turns: Sequence[ChatTurn]) -> Iterator[str]:
        """The answer piece by piece (``llm.stream_chat`` deltas)."""
        for chunk in self.llm.stream_chat(self.to_messages(turns), **self.chat_kwargs):
            if chunk.delta:
                yield chunk.delta


def _response_text(response: Any) -> str:
    content = getattr(getattr(response, "message", None), "content", None)
    if content is None:
        raise BackendError(f"the LLM returned no text content: {response!r:.200}")
    return str(content)


__all__ = ["LlamaIndexGenerator"]
