"""Haystack retriever over a :class:`~mm_rag_components.index.MultimodalIndex` (converts and delegates)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from haystack import Document, component

from ... import config
from ...errors import ConfigError
from ...index import MultimodalIndex
from ...retrieval import RetrievalOptions, retrieve
from .common import envelope, init_parameters
from .documents import candidate_to_document, make_query


@component
class MultimodalRetriever:
    """Text, image and composed (image + text) retrieval from a :class:`MultimodalIndex`.

    Options: a :class:`~mm_rag_components.retrieval.RetrievalOptions` or its fields as keywords
    (``top_k``, ``image_top_k``, ``text_top_k``, ``modalities``, ``where`` …); an unknown keyword
    is a ``ConfigError``.

    Inputs: ``query`` (text) and/or ``image`` (a path, bytes, base64 text, ``ByteStream``,
    ``ImageContent`` or PIL image); ``top_k`` overrides the options' ``top_k`` for one call.
    Output ``documents``, best first: text documents (``content`` = the chunk) and image documents
    (``meta["file_path"]`` = the image file, ``content`` = its caption or ``None``); ``score`` is
    the retrieval score on the scale named by ``meta["score_scale"]``, also kept as
    ``meta["retrieval_score"]``.
    """

    def __init__(
        self, index: MultimodalIndex, *, options: RetrievalOptions | None = None, **option_kwargs: Any
    ) -> None:
        if not isinstance(index, MultimodalIndex):
            raise ConfigError(f"index must be a MultimodalIndex, got {type(index).__name__}")
        self.index = index
        self.options = RetrievalOptions.resolve(options, **option_kwargs)

    def warm_up(self) -> None:
        """Load the index's embedders."""
        self.index.warm_up()

    def to_dict(self) -> dict[str, Any]:
        """The index (store location, embedders) and the retrieval options, as plain data."""
        return envelope(self, index=config.to_dict(self.index), options=self.options.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MultimodalRetriever:
        params = init_parameters(cls, data)
        if "index" not in params:
            raise ConfigError("MultimodalRetriever.from_dict: the saved data has no index")
        options = RetrievalOptions.from_kwargs(**(params.get("options") or {}))
        return cls(config.from_dict(params["index"]), options=options)

    @component.output_types(documents=list[Document])
    def run(
        self, query: str | None = None, image: Any = None, top_k: int | None = None
    ) -> dict[str, list[Document]]:
        """Retrieve documents for a text, an image, or both."""
        options = self.options if top_k is None else replace(self.options, top_k=top_k)
        result = retrieve(self.index, make_query(query, image), options)
        return {"documents": [candidate_to_document(c) for c in result]}

    @component.output_types(documents=list[Document])
    async def run_async(
        self, query: str | None = None, image: Any = None, top_k: int | None = None
    ) -> dict[str, list[Document]]:
        """Async :meth:`run`. The query encoder (torch) and embedded Chroma are blocking calls
        without an async API, so they run in a worker thread and the event loop stays free."""
        return await asyncio.to_thread(self.run, query, image, top_k)


__all__ = ["MultimodalRetriever"]
