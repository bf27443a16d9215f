"""Haystack component for relevance filtering (convert and delegate to the core policy)."""

from __future__ import annotations

from typing import Any

from haystack import Document, component

from ... import config
from ...errors import ConfigError
from ...filters import FilterPolicy, FilterReport
from .common import envelope, init_parameters
from .documents import apply_result, check_documents, document_to_candidate


@component
class RelevanceFilter:
    """Drop documents that are not relevant enough (see :mod:`mm_rag_components.filters`).

    Pass a ready ``policy`` (:class:`~mm_rag_components.filters.FilterPolicy`) or its options:
    ``score_key`` (``"score"`` or a meta key such as ``"rerank_score"``, ``"calibrated_score"``,
    ``"listwise_score"``), ``threshold``, ``max_k``, ``margin``, ``top_p``, ``temperature``,
    ``min_keep``, ``on_missing``; a misspelt option is a ``ConfigError``.

    Outputs ``documents`` (kept, input order; one kept only by ``min_keep`` gets
    ``meta["filter_reason"]``) and ``report`` (a :class:`~mm_rag_components.filters.FilterReport`:
    counts per drop reason, ``dropped_ids``, ``summary()``).
    """

    def __init__(self, policy: FilterPolicy | None = None, **options: Any) -> None:
        self.policy = FilterPolicy.resolve(policy, **options)

    def to_dict(self) -> dict[str, Any]:
        return envelope(self, policy=config.to_dict(self.policy))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RelevanceFilter:
        params = init_parameters(cls, data)
        if not isinstance(params.get("policy"), dict):
            raise ConfigError("RelevanceFilter.from_dict: the saved data has no policy")
        return cls(policy=config.from_dict(params["policy"]))

    @component.output_types(documents=list[Document], report=FilterReport)
    def run(self, documents: list[Document]) -> dict[str, Any]:
        """Kept documents (copies) and the report."""
        docs = check_documents(documents)
        result = self.policy.apply([document_to_candidate(d) for d in docs])
        return {"documents": apply_result(docs, result.kept_indices, result.kept), "report": result.report}

    @component.output_types(documents=list[Document], report=FilterReport)
    async def run_async(self, documents: list[Document]) -> dict[str, Any]:
        """Async :meth:`run`: a little arithmetic, done on the loop (no thread needed)."""
        return self.run(documents)


__all__ = ["RelevanceFilter"]
