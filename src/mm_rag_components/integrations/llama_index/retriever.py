"""LlamaIndex retriever over a :class:`~mm_rag_components.index.MultimodalIndex`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle

from ...index import MultimodalIndex
from ...retrieval import RetrievalOptions, retrieve
from ...types import MODALITIES, ImageSource, Query
from .nodes import candidate_to_node, query_from_bundle

logger = logging.getLogger(__name__)


class MultimodalRetriever(BaseRetriever):
    """Text, image and composed (image + text) retrieval as a LlamaIndex ``BaseRetriever``.

    Returns ``TextNode`` / ``ImageNode`` (with ``image_path``) in ``NodeWithScore``; an image query
    comes from ``QueryBundle.image_path`` or :meth:`retrieve_multimodal`. Scores follow the scale
    rules of :mod:`mm_rag_components.retrieval`; ``last_notes`` holds what the last call skipped.
    """

    def __init__(
        self,
        index: MultimodalIndex,
        *,
        modalities: Sequence[str] = MODALITIES,
        top_k: int = 5,
        image_top_k: int | None = None,
        text_top_k: int | None = None,
        image_weight: float = 0.5,
        where: dict[str, Any] | None = None,
        allow_urls: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.index = index
        self.options = RetrievalOptions(
            modalities=tuple(modalities), top_k=top_k, image_top_k=image_top_k, text_top_k=text_top_k,
            image_weight=image_weight, where=where, allow_urls=allow_urls,
        )
        self.last_notes: list[str] = []

    def _nodes(self, query: Query) -> list[NodeWithScore]:
        result = retrieve(self.index, query, self.options)
        self.last_notes = result.notes
        return [candidate_to_node(c) for c in result.candidates]

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._nodes(query_from_bundle(query_bundle))

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # Embedding and Chroma calls block; run them off the event loop.
        return await asyncio.to_thread(self._retrieve, query_bundle)

    def retrieve_multimodal(self, text: str | None = None, image: ImageSource | None = None) -> list[NodeWithScore]:
        """Retrieve for a text, an image (path, bytes, base64, PIL), or both."""
        if image is None or isinstance(image, str):
            return self.retrieve(QueryBundle(query_str=text or "", image_path=image))
        return self._nodes(query_from_bundle(text or "", image=image))


__all__ = ["MultimodalRetriever"]
