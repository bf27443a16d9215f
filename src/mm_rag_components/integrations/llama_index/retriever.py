"""LlamaIndex retriever over a :class:`~mm_rag_components.index.MultimodalIndex` (converts and delegates)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle

from ... import config
from ...errors import ConfigError
from ...index import MultimodalIndex
from ...retrieval import RetrievalOptions, retrieve
from ...types import ImageSource, Query
from .nodes import candidate_to_node, query_from_bundle

logger = logging.getLogger(__name__)


@dataclass
class MultimodalQueryBundle(QueryBundle):
    """A ``QueryBundle`` that can carry an in-memory query image (bytes, base64, PIL)."""

    image: Any = None


class MultimodalRetriever(BaseRetriever):
    """Text, image and composed (image + text) retrieval as a LlamaIndex ``BaseRetriever``.

    Returns ``TextNode`` / ``ImageNode`` (with ``image_path``, never base64) in ``NodeWithScore``.
    The query image comes from ``QueryBundle.image_path`` or from :meth:`retrieve_multimodal`.
    Options: a :class:`~mm_rag_components.retrieval.RetrievalOptions` or its fields as keywords
    (``top_k``, ``image_top_k``, ``text_top_k``, ``modalities``, ``where`` …); scores follow its
    scale rules (``metadata["score_scale"]``). ``last_notes`` holds what the last call skipped.
    """

    def __init__(
        self,
        index: MultimodalIndex,
        *,
        options: RetrievalOptions | None = None,
        callback_manager: Any = None,
        verbose: bool = False,
        **option_kwargs: Any,
    ) -> None:
        super().__init__(callback_manager=callback_manager, verbose=verbose)
        self.index = index
        self.options = RetrievalOptions.resolve(options, **option_kwargs)
        self.last_notes: list[str] = []

    def to_dict(self) -> dict[str, Any]:
        """The index (store location, embedders) and the retrieval options, as plain data."""
        return {"class_name": "MultimodalRetriever", "index": config.to_dict(self.index), "options": self.options.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], **index_overrides: Any) -> "MultimodalRetriever":
        if not isinstance(data, dict) or "index" not in data:
            raise ConfigError("MultimodalRetriever.from_dict needs the dict written by to_dict()")
        return cls(config.from_dict(data["index"], **index_overrides), **data.get("options", {}))

    def _nodes(self, query: Query) -> list[NodeWithScore]:
        result = retrieve(self.index, query, self.options)
        self.last_notes = result.notes
        return [candidate_to_node(c) for c in result]

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._nodes(query_from_bundle(query_bundle, image=getattr(query_bundle, "image", None)))

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # The query encoder (torch) and embedded Chroma are blocking calls without an async API;
        # running them in a worker thread keeps the event loop free for other requests.
        return await asyncio.to_thread(self._retrieve, query_bundle)

    @staticmethod
    def _bundle(text: str | None, image: ImageSource | None) -> QueryBundle:
        if isinstance(image, Path):
            image = str(image)
        if image is None or isinstance(image, str):
            return QueryBundle(query_str=text or "", image_path=image)
        return MultimodalQueryBundle(query_str=text or "", image=image)

    def retrieve_multimodal(self, text: str | None = None, image: ImageSource | None = None) -> list[NodeWithScore]:
        """Retrieve for a text, an image (path, bytes, base64, PIL), or both (a composed query)."""
        return self.retrieve(self._bundle(text, image))

    async def aretrieve_multimodal(self, text: str | None = None, image: ImageSource | None = None) -> list[NodeWithScore]:
        """Async :meth:`retrieve_multimodal`."""
        return await self.aretrieve(self._bundle(text, image))


__all__ = ["MultimodalQueryBundle", "MultimodalRetriever"]
