"""The shared body of the Haystack rerankers: convert documents, delegate to a core
:class:`~mm_rag_components.rerank.base.Reranker` (``rerank`` / native async ``arerank``), convert back."""

from __future__ import annotations

from typing import Any

from haystack import Document, component

from ...rerank.base import Reranker, RerankResult
from ...types import Candidate, Query
from ...validate import positive_int
from .documents import apply_result, check_documents, document_to_candidate, make_query


class RerankComponent:
    """Base of :class:`PointwiseReranker` and :class:`ListwiseReranker` (not a component itself).

    The core reranker is built at construction (cores read no files then; their models load
    in :meth:`warm_up` or on first use).
    """

    def _init_core(self, ranker: Reranker) -> None:
        self._ranker = ranker

    @property
    def reranker(self) -> Reranker:
        """The framework-free reranker doing the work."""
        return self._ranker

    def warm_up(self) -> None:
        """Load the core's model (a ``ModelError`` surfaces here)."""
        self._ranker.warm_up()

    def _prepare(
        self, documents: Any, query: Any, image: Any, top_k: Any
    ) -> tuple[list[Document], Query, list[Candidate]]:
        query_obj = make_query(query, image)
        positive_int("top_k", top_k, optional=True)
        docs = check_documents(documents)
        return docs, query_obj, [document_to_candidate(d) for d in docs]

    @staticmethod
    def _finish(documents: list[Document], result: RerankResult, top_k: int | None) -> dict[str, list[Document]]:
        return {"documents": apply_result(documents, result.indices, result.candidates)[:top_k]}

    @component.output_types(documents=list[Document])
    def run(
        self, documents: list[Document], query: str | None = None, image: Any = None, top_k: int | None = None
    ) -> dict[str, list[Document]]:
        """Rerank ``documents`` for a text ``query``, a query ``image``, or both.

        Returns copies of the documents, best first (at most ``top_k`` when given, and the core's
        ``top_n``), with the core's score as ``score`` and its provenance in ``meta``.
        """
        docs, query_obj, candidates = self._prepare(documents, query, image, top_k)
        if not candidates:
            return {"documents": []}
        return self._finish(docs, self.reranker.rerank(query_obj, candidates), top_k)

    @component.output_types(documents=list[Document])
    async def run_async(
        self, documents: list[Document], query: str | None = None, image: Any = None, top_k: int | None = None
    ) -> dict[str, list[Document]]:
        """Async :meth:`run`, through the core's native ``arerank``."""
        docs, query_obj, candidates = self._prepare(documents, query, image, top_k)
        if not candidates:
            return {"documents": []}
        return self._finish(docs, await self.reranker.arerank(query_obj, candidates), top_k)


__all__ = ["RerankComponent"]
