"""Any LangChain chat model as a listwise generator (ChatOpenAI, ChatAnthropic, ChatGoogleGenerativeAI,
ChatOllama … or a ``.bind(...)`` of one): our chat turns become LangChain messages whose content is
a list of LangChain 1.x standard content blocks, text and images in prompt order."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from ...errors import BackendError, ConfigError
from ...generation.base import ChatTurn
from ...generation.images import check_image_format, encode_image

_MESSAGES = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}


class LangChainGenerator:
    """Answer chat turns with ``llm.invoke`` / ``llm.ainvoke`` (native async).

    Images travel as standard image blocks ``{"type": "image", "base64": ..., "mime_type": ...}``
    between ``{"type": "text", "text": ...}`` blocks; each provider integration translates them
    to its own wire format. Fix sampling settings on the model itself (``llm.bind(temperature=0)``).
    """

    accepts_images = True

    def __init__(self, llm: Any, *, image_format: str = "PNG") -> None:
        if not (callable(getattr(llm, "invoke", None)) and callable(getattr(llm, "ainvoke", None))):
            raise ConfigError(f"llm must be a LangChain chat model (a Runnable with invoke/ainvoke), got {type(llm).__name__}")
        self.llm = llm
        self.image_format = check_image_format(image_format)
        model = getattr(llm, "bound", llm)  # a RunnableBinding from .bind()
        self.name = str(getattr(model, "model_name", None) or getattr(model, "model", None) or type(model).__name__)

    def config(self) -> dict[str, Any]:
        """A description of the chat model (never its client or credentials) and the image format;
        rebuilding needs the model again: ``ListwiseReranker.from_dict(data, llm=chat_model)``."""
        model = getattr(self.llm, "bound", self.llm)
        return {"llm": {"class": type(model).__name__, "model": self.name}, "image_format": self.image_format}

    @classmethod
    def from_config(cls, llm: Any, **options: Any) -> LangChainGenerator:
        if isinstance(llm, Mapping):
            raise ConfigError(
                f"a saved LangChain chat model ({llm.get('class')}, {llm.get('model')}) is not rebuilt from a "
                "config; pass llm=your_chat_model when loading"
            )
        return cls(llm, **options)

    def to_messages(self, turns: Sequence[ChatTurn]) -> list[BaseMessage]:
        """Our chat turns as LangChain messages with standard text and image content blocks."""
        messages = []
        for turn in turns:
            message_class = _MESSAGES.get(turn.role)
            if message_class is None:
                raise ConfigError(f"unknown chat role {turn.role!r}")
            blocks: list[dict[str, Any]] = []
            for part in turn.parts:
                if isinstance(part, str):
                    blocks.append({"type": "text", "text": part})
                else:
                    data, mime_type = encode_image(part, self.image_format)
                    blocks.append({"type": "image", "base64": base64.b64encode(data).decode("ascii"), "mime_type": mime_type})
            messages.append(message_class(content=blocks))
        return messages

    def generate(self, turns: Sequence[ChatTurn]) -> str:
        return _answer_text(self.llm.invoke(self.to_messages(turns)))

    async def agenerate(self, turns: Sequence[ChatTurn]) -> str:
        return _answer_text(await self.llm.ainvoke(self.to_messages(turns)))


def _answer_text(answer: Any) -> str:
    if isinstance(answer, str):
        return answer
    if isinstance(answer, BaseMessage):
        return str(answer.text)
    raise BackendError(f"the chat model returned no message: {answer!r:.200}")


__all__ = ["LangChainGenerator"]
