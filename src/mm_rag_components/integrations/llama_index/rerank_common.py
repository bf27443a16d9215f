"""The shared base of the rerank postprocessors: convert nodes, delegate to a core
:class:`~mm_rag_components.rerank.base.Reranker`, emit LlamaIndex's rerank events, save config."""

from __future__ import annotations

from typing import Any, Optional

from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle

from ... import config
from ...errors import ConfigError
from ...rerank.base import Reranker, RerankResult
from .nodes import apply_result, node_to_candidate, query_from_bundle

dispatcher = get_dispatcher(__name__)


class RerankPostprocessor(BaseNodePostprocessor):
    """A node postprocessor around a core reranker (``rerank`` / ``arerank``)."""

    _reranker: Reranker = PrivateAttr()
    _last_result: Optional[RerankResult] = PrivateAttr(default=None)

    def __init__(self, reranker: Reranker, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._reranker = reranker

    @property
    def reranker(self) -> Reranker:
        """The framework-free reranker doing the work."""
        return self._reranker

    @property
    def top_n(self) -> int | None:
        return self._reranker.top_n

    @property
    def last_result(self) -> RerankResult | None:
        """The most recent :class:`RerankResult` (``details``: e.g. listwise windows); not thread-safe."""
        return self._last_result

    def warm_up(self) -> None:
        self._reranker.warm_up()

    def to_dict(self, **kwargs: Any) -> dict[str, Any]:
        """``{"class_name": ..., "reranker": <core config>}`` (model names and options, no weights)."""
        return {"class_name": self.class_name(), "reranker": config.to_dict(self._reranker)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> Any:  # type: ignore[override]
        """Rebuild from :meth:`to_dict`; ``overrides`` replace the reranker's saved arguments."""
        if not isinstance(data, dict) or "reranker" not in data:
            raise ConfigError(f"{cls.class_name()}.from_dict needs the dict written by to_dict()")
        return cls(reranker=config.from_dict(data["reranker"], **overrides))

    def _start(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> tuple[Any, list[Any]]:
        if query_bundle is None:
            raise ConfigError(f"{self.class_name()} needs a query (text, image, or both)")
        dispatcher.event(ReRankStartEvent(
            query=query_bundle, nodes=nodes, top_n=self.top_n or len(nodes), model_name=self._reranker.name
        ))
        return query_from_bundle(query_bundle), [node_to_candidate(n) for n in nodes]

    def _end(self, nodes: list[NodeWithScore], result: RerankResult) -> list[NodeWithScore]:
        self._last_result = result
        out = apply_result(nodes, result.indices, result.candidates)
        dispatcher.event(ReRankEndEvent(nodes=out))
        return out

    def _postprocess_nodes(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        if not nodes:
            return []
        query, candidates = self._start(nodes, query_bundle)
        return self._end(nodes, self._reranker.rerank(query, candidates))

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if not nodes:
            return []
        query, candidates = self._start(nodes, query_bundle)
        return self._end(nodes, await self._reranker.arerank(query, candidates))


__all__ = ["RerankPostprocessor"]
