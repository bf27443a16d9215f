"""The shared base of the rerank compressors: convert documents, delegate to a core
:class:`~mm_rag_components.rerank.base.Reranker`, optionally filter, save config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import PrivateAttr

from ... import config as mm_config
from ...errors import ConfigError
from ...filters import FilterPolicy, FilterReport, FilterResult
from ...rerank.base import Reranker, RerankResult
from .documents import check_documents, document_to_candidate, reranked_document, to_query
from .filters import RelevanceFilter, as_policy, dropped_document

#: What ``relevance_filter=`` accepts.
FilterLike = FilterPolicy | RelevanceFilter | Mapping[str, Any] | None


@dataclass
class RerankedDocuments:
    """One rerank call: the ``documents`` kept (new objects, best first), the core's
    :class:`RerankResult` (``details``: e.g. the listwise windows), the filter's result when a
    filter is set, and copies of the documents it ``dropped`` (``metadata["filter_reason"]``)."""

    documents: list[Document]
    result: RerankResult
    filtered: FilterResult | None = None
    dropped: list[Document] = field(default_factory=list)

    @property
    def report(self) -> FilterReport | None:
        return self.filtered.report if self.filtered is not None else None


class MultimodalReranker(BaseDocumentCompressor):
    """A LangChain document compressor around any core reranker (``rerank`` / ``arerank``).

    Documents become :class:`~mm_rag_components.types.Candidate` s (images by
    ``metadata["image_path"]``, see :mod:`.documents`); the query may be a string, a
    :class:`~mm_rag_components.types.Query` or ``{"text": ..., "image": ...}``. The result is new
    ``Document`` s, best first, with ``relevance_score`` and the core's provenance in metadata.
    ``relevance_filter`` (a :class:`~mm_rag_components.filters.FilterPolicy`, a
    :class:`RelevanceFilter` or a dict of its options) runs on the reranked list.
    """

    _reranker: Reranker = PrivateAttr()
    _policy: FilterPolicy | None = PrivateAttr(default=None)
    _last: RerankedDocuments | None = PrivateAttr(default=None)

    def __init__(self, reranker: Reranker, *, relevance_filter: FilterLike = None) -> None:
        super().__init__()
        if not isinstance(reranker, Reranker):
            raise ConfigError(f"reranker must follow the Reranker protocol (rerank/arerank), got {type(reranker).__name__}")
        self._reranker = reranker
        self._policy = None if relevance_filter is None else as_policy(relevance_filter)

    def __repr_args__(self) -> Any:
        return [("reranker", self._reranker.name), ("top_n", self.top_n), ("relevance_filter", self._policy)]

    @property
    def reranker(self) -> Reranker:
        """The framework-free reranker doing the work."""
        return self._reranker

    @property
    def policy(self) -> FilterPolicy | None:
        return self._policy

    @property
    def top_n(self) -> int | None:
        return self._reranker.top_n

    @property
    def last(self) -> RerankedDocuments | None:
        """Everything about the most recent compress call (not thread-safe; see :meth:`rerank_documents`)."""
        return self._last

    @property
    def last_result(self) -> RerankResult | None:
        return self._last.result if self._last is not None else None

    @property
    def last_report(self) -> FilterReport | None:
        """The filter's report of the most recent call: counts per reason, ``dropped_ids``, ``summary()``."""
        return self._last.report if self._last is not None else None

    def warm_up(self) -> None:
        self._reranker.warm_up()

    def to_dict(self) -> dict[str, Any]:
        """``{"class_name", "reranker": <core config>, "relevance_filter": <policy config> | None}``."""
        policy = None if self._policy is None else mm_config.to_dict(self._policy)
        return {"class_name": type(self).__name__, "reranker": mm_config.to_dict(self._reranker), "relevance_filter": policy}

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> Any:
        """Rebuild from :meth:`to_dict`; ``overrides`` replace the reranker's saved arguments."""
        if not isinstance(data, dict) or "reranker" not in data:
            raise ConfigError(f"{cls.__name__}.from_dict needs the dict written by to_dict()")
        policy = data.get("relevance_filter")
        return cls(
            reranker=mm_config.from_dict(data["reranker"], **overrides),
            relevance_filter=None if policy is None else mm_config.from_dict(policy),
        )

    # ------------------------------------------------------------------ work
    def rerank_documents(self, documents: Sequence[Document], query: object) -> RerankedDocuments:
        """Rerank (and filter) ``documents`` for ``query``; nothing is stored on the compressor."""
        docs, parsed, candidates = self._start(documents, query)
        if not docs:
            return RerankedDocuments([], RerankResult([], [], 0))
        return self._finish(docs, self._reranker.rerank(parsed, candidates))

    async def arerank_documents(self, documents: Sequence[Document], query: object) -> RerankedDocuments:
        """Async :meth:`rerank_documents` through the core's native ``arerank``."""
        docs, parsed, candidates = self._start(documents, query)
        if not docs:
            return RerankedDocuments([], RerankResult([], [], 0))
        return self._finish(docs, await self._reranker.arerank(parsed, candidates))

    def compress_documents(
        self, documents: Sequence[Document], query: Any, callbacks: Callbacks | None = None
    ) -> list[Document]:
        self._last = self.rerank_documents(documents, query)
        return self._last.documents

    async def acompress_documents(
        self, documents: Sequence[Document], query: Any, callbacks: Callbacks | None = None
    ) -> list[Document]:
        self._last = await self.arerank_documents(documents, query)
        return self._last.documents

    @staticmethod
    def _start(documents: Sequence[Document], query: object) -> tuple[list[Document], Any, list[Any]]:
        docs = check_documents(documents)
        parsed = to_query(query)
        return docs, parsed, [document_to_candidate(d, i) for i, d in enumerate(docs)]

    def _finish(self, docs: list[Document], result: RerankResult) -> RerankedDocuments:
        if self._policy is None or not result.candidates:
            kept = [reranked_document(docs[i], c) for i, c in zip(result.indices, result.candidates)]
            return RerankedDocuments(kept, result)
        filtered = self._policy.apply(result.candidates)
        source = [docs[i] for i in result.indices]  # the document behind each reranked candidate
        kept = [reranked_document(source[k], c) for k, c in zip(filtered.kept_indices, filtered.kept)]
        dropped = [
            dropped_document(source[d.index], reranked_document(source[d.index], d.candidate).metadata, d.reason)
            for d in filtered.dropped
        ]
        return RerankedDocuments(kept, result, filtered, dropped)


__all__ = ["MultimodalReranker", "RerankedDocuments"]
