"""Haystack component for listwise (chain-of-thought) MLLM reranking: convert and delegate."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from haystack import component
from haystack.core.serialization import component_to_dict
from haystack.utils import deserialize_chatgenerator_inplace

from ... import config
from ...errors import ConfigError
from ...generation.base import Generator, generator_for
from ...rerank.listwise import ListwiseRanker
from ...rerank.options import ListwiseOptions, Unpack
from .common import envelope, init_parameters
from .generator import HaystackChatGenerator
from .rerank_common import RerankComponent


@component
class ListwiseReranker(RerankComponent):
    """Rerank documents with one listwise MLLM prompt per window (reasoning, then a JSON ranking).

    Give one backend: ``chat_generator`` (any Haystack chat generator — ``run(messages=...)``
    returning ``{"replies": [ChatMessage]}`` — that accepts ``ImageContent``; ``image_format``,
    ``generation_kwargs`` and ``accepts_images`` go to its
    :class:`~mm_rag_components.integrations.haystack.HaystackChatGenerator`), ``model`` (a local
    model name or directory), any core ``generator``, or a ready core ``reranker``
    (:class:`~mm_rag_components.rerank.listwise.ListwiseRanker`). Other options (``top_n``,
    ``window_size``, ``step``, ``num_permutations``, ``timeout`` …, and ``max_new_tokens``,
    ``device`` for a local model) go to :meth:`ListwiseRanker.create`. Nothing loads at
    construction; :meth:`warm_up` loads a local model or warms the chat generator.

    The query (text and/or image) and the candidates — image documents shown as images — reach the
    model as one user ``ChatMessage`` with ``TextContent`` and ``ImageContent`` parts.
    ``run_async`` awaits the chat generator's ``run_async`` when it has one.
    Output ``documents``: copies, best first, ``score`` = Borda score in [0, 1]; ``meta`` adds
    ``listwise_rank``, ``listwise_score``, ``listwise_parse_status``, ``listwise_rationale``,
    ``listwise_flag`` (and ``retrieval_score``) to every original key.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        chat_generator: Any = None,
        generator: Generator | None = None,
        reranker: ListwiseRanker | None = None,
        image_format: str | None = None,
        generation_kwargs: Mapping[str, Any] | None = None,
        accepts_images: bool | None = None,
        **options: Unpack[ListwiseOptions],
    ) -> None:
        given = {"image_format": image_format, "generation_kwargs": generation_kwargs, "accepts_images": accepts_images}
        chat_options = {k: v for k, v in given.items() if v is not None}
        generator = generator_for(chat_generator, generator, HaystackChatGenerator, chat_options, llm_name="chat_generator")
        self._init_core(ListwiseRanker.create(model, generator=generator, reranker=reranker, **options))

    @property
    def chat_generator(self) -> Any:
        """The Haystack chat generator doing the work, if one does."""
        generator = self.reranker.generator  # type: ignore[attr-defined]
        return generator.chat_generator if isinstance(generator, HaystackChatGenerator) else None

    def to_dict(self) -> dict[str, Any]:
        """The core reranker's config; a chat generator is saved by Haystack beside it."""
        params: dict[str, Any] = {"reranker": config.to_dict(self.reranker)}
        if self.chat_generator is not None:
            params["chat_generator"] = component_to_dict(self.chat_generator, "chat_generator")
        return envelope(self, **params)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ListwiseReranker:
        params = init_parameters(cls, data)
        if not isinstance(params.get("reranker"), dict):
            raise ConfigError("ListwiseReranker.from_dict: the saved data has no reranker")
        saved = copy.deepcopy(params["reranker"])
        if "chat_generator" in params:
            deserialize_chatgenerator_inplace(params, key="chat_generator")  # Haystack's allowlist applies
            generator = saved.get("generator")
            if not isinstance(generator, dict):
                raise ConfigError("ListwiseReranker.from_dict: the saved reranker has no generator")
            generator["chat_generator"] = params["chat_generator"]  # a live object: passed through as is
        return cls(reranker=config.from_dict(saved))


__all__ = ["ListwiseReranker"]
