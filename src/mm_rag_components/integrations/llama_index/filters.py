"""LlamaIndex node postprocessor for relevance filtering (thin: read scores, delegate to the core)."""

from __future__ import annotations

import logging
from typing import Literal, Optional

from llama_index.core.bridge.pydantic import Field, PrivateAttr, ValidationError
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle

from ...errors import ConfigError
from ...filters import FilterPolicy, FilterReport

logger = logging.getLogger(__name__)

#: Metadata written on a node kept only because of ``min_keep``: the reason it would have been dropped.
FILTER_REASON = "filter_reason"


class RelevanceFilter(BaseNodePostprocessor):
    """Drop nodes that are not relevant enough; modes compose (see :mod:`mm_rag_components.filters`).

    ``score_key`` names the score read: ``"score"`` (the node's score) or a metadata key such as
    ``"calibrated_score"``, ``"rerank_score"``, ``"listwise_score"`` or ``"retrieval_score"``.
    ``threshold`` (absolute), ``max_k`` (with ``threshold``: adaptive up-to-k), ``margin``
    (score ≥ best − margin), ``top_p`` (softmax mass at ``temperature``) and ``min_keep`` compose.

    Why nodes were dropped: :attr:`last_report` (a :class:`~mm_rag_components.filters.FilterReport`
    with counts per reason, ``dropped_ids`` and :meth:`~FilterReport.summary`), logged at INFO.
    A node kept only by ``min_keep`` carries ``filter_reason`` metadata (e.g.
    ``"below_threshold (kept by min_keep)"``). For concurrent use call :meth:`filter_with_report`.
    """

    score_key: str = Field(default="score", description="'score' or a node metadata key.")
    threshold: Optional[float] = Field(default=None, description="Drop scores below this.")
    max_k: Optional[int] = Field(default=None, description="Keep at most this many (best first).")
    margin: Optional[float] = Field(default=None, description="Drop scores below best - margin.")
    top_p: Optional[float] = Field(default=None, description="Keep the smallest set with softmax mass >= top_p.")
    temperature: float = Field(default=1.0, description="Softmax temperature for top_p.")
    min_keep: int = Field(default=0, description="Always keep at least this many (the best).")
    on_missing: Literal["drop", "keep", "error"] = Field(default="drop", description="Nodes without the score.")
    _last_report: Optional[FilterReport] = PrivateAttr(default=None)

    def __init__(self, **data: object) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(f"invalid RelevanceFilter settings: {exc}") from exc
        self.policy()  # validate the combination now, not at the first query

    @classmethod
    def class_name(cls) -> str:
        return "RelevanceFilter"

    @property
    def last_report(self) -> FilterReport | None:
        """Report of the most recent call (not thread-safe; see :meth:`filter_with_report`)."""
        return self._last_report

    def policy(self) -> FilterPolicy:
        """The core policy for the current settings."""
        return FilterPolicy(
            threshold=self.threshold,
            max_k=self.max_k,
            margin=self.margin,
            top_p=self.top_p,
            temperature=self.temperature,
            min_keep=self.min_keep,
            on_missing=self.on_missing,
        )

    def score_of(self, node: NodeWithScore) -> object:
        return node.score if self.score_key == "score" else (node.node.metadata or {}).get(self.score_key)

    def filter_with_report(self, nodes: list[NodeWithScore]) -> tuple[list[NodeWithScore], FilterReport]:
        """Kept nodes (input order) and the report, without touching :attr:`last_report`."""
        kept, report = self.policy().decide([self.score_of(n) for n in nodes], [n.node.node_id for n in nodes])  # type: ignore[misc]
        for index, reason in report.restored.items():
            node = nodes[index].node
            node.metadata[FILTER_REASON] = f"{reason} (kept by min_keep)"
            if FILTER_REASON not in node.excluded_llm_metadata_keys:
                node.excluded_llm_metadata_keys = [*node.excluded_llm_metadata_keys, FILTER_REASON]
                node.excluded_embed_metadata_keys = [*node.excluded_embed_metadata_keys, FILTER_REASON]
        logger.info("RelevanceFilter(%s): %s", self.score_key, report.summary())
        return [nodes[i] for i in kept], report

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        kept, self._last_report = self.filter_with_report(nodes)
        return kept

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        return self._postprocess_nodes(nodes, query_bundle)  # cheap arithmetic: no thread needed


__all__ = ["FILTER_REASON", "RelevanceFilter"]
