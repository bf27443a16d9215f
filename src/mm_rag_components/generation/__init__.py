"""Generation: one protocol for every model that answers chat turns (text and images) with text.

The answer stage and the listwise reranker both take any :class:`Generator`:
:class:`TransformersGenerator` (a local model), :class:`~mm_rag_components.remote.OpenAIChatGenerator`
(an OpenAI-compatible server), or a framework LLM wrapped by its adapter
(``integrations.llama_index.LlamaIndexGenerator``, ``integrations.haystack.HaystackChatGenerator``,
``integrations.langchain.LangChainGenerator``). Heavy libraries load on first use.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "ChatTurn": "base",
    "Generator": "base",
    "ListwiseGenerator": "base",
    "Part": "base",
    "generated_text": "base",
    "generator_for": "base",
    "GeneratorCall": "calls",
    "call_generator": "calls",
    "acall_generator": "calls",
    "FLAG_TIMEOUT": "calls",
    "FLAG_GENERATOR_ERROR": "calls",
    "IMAGE_FORMATS": "images",
    "check_image_format": "images",
    "encode_image": "images",
    "TransformersGenerator": "transformers",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
