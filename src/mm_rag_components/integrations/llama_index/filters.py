"""LlamaIndex node postprocessor for relevance filtering (convert and delegate to the core policy)."""

from __future__ import annotations

from typing import Any, Optional

from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle

from ... import config
from ...errors import ConfigError
from ...filters import FilterPolicy, FilterReport
from ...types import FILTER_REASON  # re-exported
from .nodes import apply_result, node_to_candidate


class RelevanceFilter(BaseNodePostprocessor):
    """Drop nodes that are not relevant enough (see :mod:`mm_rag_components.filters`).

    Pass a ready ``policy`` (:class:`~mm_rag_components.filters.FilterPolicy`) or its options:
    ``score_key`` (``"score"`` or a metadata key such as ``"calibrated_score"``), ``threshold``,
    ``max_k`` (with ``threshold``: adaptive up-to-k), ``margin``, ``top_p``, ``temperature``,
    ``min_keep``, ``on_missing``. A misspelt option is a ``ConfigError``.

    Why nodes were dropped: :attr:`last_report` (counts per reason, ``dropped_ids``,
    :meth:`~mm_rag_components.filters.FilterReport.summary`). A node kept only by ``min_keep``
    carries ``filter_reason`` metadata. For concurrent use call :meth:`filter_with_report`.
    """

    _policy: FilterPolicy = PrivateAttr()
    _last_report: Optional[FilterReport] = PrivateAttr(default=None)

    def __init__(self, policy: FilterPolicy | None = None, **options: Any) -> None:
        super().__init__()
        self._policy = FilterPolicy.resolve(policy, **options)

    @classmethod
    def class_name(cls) -> str:
        return "RelevanceFilter"

    @property
    def policy(self) -> FilterPolicy:
        return self._policy

    @property
    def last_report(self) -> FilterReport | None:
        """Report of the most recent call (not thread-safe; see :meth:`filter_with_report`)."""
        return self._last_report

    def to_dict(self, **kwargs: Any) -> dict[str, Any]:
        return {"class_name": self.class_name(), "policy": config.to_dict(self._policy)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], **kwargs: Any) -> "RelevanceFilter":  # type: ignore[override]
        if not isinstance(data, dict) or "policy" not in data:
            raise ConfigError("RelevanceFilter.from_dict needs the dict written by to_dict()")
        return cls(policy=config.from_dict(data["policy"]))

    def filter_with_report(self, nodes: list[NodeWithScore]) -> tuple[list[NodeWithScore], FilterReport]:
        """Kept nodes (input order) and the report, without touching :attr:`last_report`."""
        result = self._policy.apply([node_to_candidate(n) for n in nodes])
        return apply_result(nodes, result.kept_indices, result.kept), result.report

    def _postprocess_nodes(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        kept, self._last_report = self.filter_with_report(nodes)
        return kept

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        return self._postprocess_nodes(nodes, query_bundle)  # cheap arithmetic: no thread needed


__all__ = ["FILTER_REASON", "RelevanceFilter"]
