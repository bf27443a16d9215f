"""The LlamaIndex LLM of the LlamaIndex examples: a model behind an OpenAI-compatible server
(``--llm-url``, e.g. vLLM or llama.cpp's ``llama-server``) or, by default, a local transformers
VLM (``--answer-model``) through :class:`LocalLLM`."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    CompletionResponseGen,
    ImageBlock,
    LLMMetadata,
    TextBlock,
)
from llama_index.core.llms import LLM
from llama_index.core.llms.custom import CustomLLM

from mm_rag_components.generation.base import ChatTurn
from mm_rag_components.generation.transformers import TransformersGenerator

#: SmolVLM's context; LlamaIndex packs the kept images into one prompt only if they fit its budget.
CONTEXT_WINDOW = 8192


class LocalLLM(CustomLLM):
    """A LlamaIndex chat LLM over a local transformers model (a VLM sees the messages' images).

    A stand-in for ``llama-index-llms-huggingface`` so the examples need nothing extra installed.
    """

    generator: Any = None

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.generator.name, is_chat_model=True, context_window=CONTEXT_WINDOW)

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        turns = [ChatTurn(m.role.value, tuple(p for p in map(_part, m.blocks) if p is not None)) for m in messages]
        return ChatResponse(message=ChatMessage(role="assistant", content=self.generator.generate(turns)))

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await asyncio.to_thread(self.chat, messages, **kwargs)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self.generator.generate([ChatTurn("user", (prompt,))]))

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        yield self.complete(prompt, formatted, **kwargs)


def _part(block: Any) -> Any:
    from PIL import Image

    if isinstance(block, TextBlock):
        return block.text
    if isinstance(block, ImageBlock):
        return Image.open(block.resolve_image()).convert("RGB")
    return None


def make_llm(args: argparse.Namespace) -> LLM:
    """``OpenAILike`` for ``--llm-url``, else :class:`LocalLLM` over ``--answer-model``."""
    if args.llm_url:
        from llama_index.llms.openai_like import OpenAILike

        return OpenAILike(model=args.llm_model, api_base=args.llm_url, api_key="none", is_chat_model=True,
                          max_tokens=args.max_new_tokens, temperature=0.0, context_window=CONTEXT_WINDOW)
    return LocalLLM(generator=TransformersGenerator(args.answer_model, max_new_tokens=args.max_new_tokens))
