"""LangChain retriever over a :class:`~mm_rag_components.index.MultimodalIndex` (converts and delegates)."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig
from pydantic import PrivateAttr

from ... import config as mm_config
from ...errors import ConfigError
from ...index import MultimodalIndex
from ...retrieval import RetrievalOptions, retrieve
from ...types import ImageSource, Query
from .documents import candidate_to_document, to_query


class MultimodalRetriever(BaseRetriever):
    """Text, image and composed (image + text) retrieval as a LangChain ``BaseRetriever``.

    ``invoke`` takes a string, a :class:`~mm_rag_components.types.Query`, or a mapping
    ``{"text": ..., "image": ...}`` (the same input works through ``ContextualCompressionRetriever``
    and reaches our rerankers unchanged); :meth:`invoke_multimodal` is the keyword form.
    Returns ``Document`` s best first: texts as ``page_content``; images with their path in
    ``metadata["image_path"]`` and their caption (or ``""``) as ``page_content``; every document
    carries ``modality``, ``source``, ``retrieval_score``, ``cosine``, ``rank``, ``score_scale``.

    Options: a :class:`~mm_rag_components.retrieval.RetrievalOptions` or its fields as keywords
    (``top_k``, ``image_top_k``, ``text_top_k``, ``modalities``, ``where`` …). ``tags`` and
    ``metadata`` are LangChain's run tags/metadata. :attr:`last_notes` says what the last call skipped.
    """

    _index: MultimodalIndex = PrivateAttr()
    _options: RetrievalOptions = PrivateAttr()
    _last_notes: list[str] = PrivateAttr(default_factory=list)

    def __init__(
        self,
        index: MultimodalIndex,
        *,
        options: RetrievalOptions | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **option_kwargs: Any,
    ) -> None:
        super().__init__(tags=tags, metadata=metadata)
        if not isinstance(index, MultimodalIndex):
            raise ConfigError(f"index must be a MultimodalIndex, got {type(index).__name__}")
        self._index = index
        self._options = RetrievalOptions.resolve(options, **option_kwargs)

    def __repr_args__(self) -> Any:
        return [("index", self._index), ("options", self._options)]

    @property
    def index(self) -> MultimodalIndex:
        return self._index

    @property
    def options(self) -> RetrievalOptions:
        return self._options

    @property
    def last_notes(self) -> list[str]:
        """Notes of the most recent call (e.g. a text collection skipped for an image-only query)."""
        return list(self._last_notes)

    def to_dict(self) -> dict[str, Any]:
        """The index (store location, embedders) and the retrieval options, as plain data."""
        return {"class_name": "MultimodalRetriever", "index": mm_config.to_dict(self._index), "options": self._options.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], **index_overrides: Any) -> MultimodalRetriever:
        """Rebuild from :meth:`to_dict`; ``index_overrides`` replace saved index arguments."""
        if not isinstance(data, dict) or "index" not in data:
            raise ConfigError("MultimodalRetriever.from_dict needs the dict written by to_dict()")
        return cls(mm_config.from_dict(data["index"], **index_overrides), **data.get("options", {}))

    def _documents(self, query: object) -> list[Document]:
        result = retrieve(self._index, to_query(query), self._options)
        self._last_notes = list(result.notes)
        return [candidate_to_document(c) for c in result]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return self._documents(query)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        # The query encoder (torch) and embedded Chroma are blocking calls without an async API;
        # a worker thread keeps the event loop free meanwhile.
        return await asyncio.to_thread(self._documents, query)

    def invoke_multimodal(
        self, text: str | None = None, image: ImageSource | None = None, config: RunnableConfig | None = None
    ) -> list[Document]:
        """Retrieve for a text, an image (path, bytes, base64, PIL), or both (a composed query)."""
        return self.invoke(Query(text=text, image=image), config)  # type: ignore[arg-type]

    async def ainvoke_multimodal(
        self, text: str | None = None, image: ImageSource | None = None, config: RunnableConfig | None = None
    ) -> list[Document]:
        """Async :meth:`invoke_multimodal`."""
        return await self.ainvoke(Query(text=text, image=image), config)  # type: ignore[arg-type]


__all__ = ["MultimodalRetriever"]
