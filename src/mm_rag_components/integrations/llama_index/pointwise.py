"""LlamaIndex node postprocessor for pointwise MLLM reranking (thin: convert and delegate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle

from ...errors import ConfigError
from ...rerank.pointwise import Calibrator, arerank_pointwise, rerank_pointwise
from ...scoring.base import RelevanceScorer
from .rerank_common import begin_rerank, end_rerank


class PointwiseReranker(BaseNodePostprocessor):
    """Rerank nodes (text, image, or both) by an MLLM's p(relevant) for a text/image query.

    Pass ``model`` (a name or local directory; builds a ``TransformersScorer`` with
    ``scorer_kwargs``) or any ``scorer`` following :class:`RelevanceScorer`. The node score becomes
    p(relevant) — the calibrated probability when ``calibration`` is given — or, with
    ``fusion_weight=w``, ``retrieval + w · p``. Metadata keeps ``retrieval_score``, ``rerank_score``,
    ``rerank_logodds``, ``calibrated_score`` and ``rerank_flag``.
    """

    top_n: Optional[int] = Field(default=None, description="Keep this many nodes (all when None).")
    fusion_weight: Optional[float] = Field(default=None, description="final = retrieval + w * p when set.")
    _scorer: RelevanceScorer = PrivateAttr()
    _calibration: Optional[Calibrator] = PrivateAttr(default=None)

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        scorer: RelevanceScorer | None = None,
        top_n: int | None = None,
        fusion_weight: float | None = None,
        calibration: Calibrator | str | Path | None = None,
        **scorer_kwargs: Any,
    ) -> None:
        if (model is None) == (scorer is None):
            raise ConfigError("give exactly one of model (name or directory) or scorer")
        if top_n is not None and top_n < 1:
            raise ConfigError(f"top_n must be >= 1, got {top_n}")
        super().__init__(top_n=top_n, fusion_weight=fusion_weight)
        if scorer is None:
            from ...scoring.transformers_scorer import TransformersScorer

            scorer = TransformersScorer(model, **scorer_kwargs)  # type: ignore[arg-type]
        elif scorer_kwargs:
            raise ConfigError(f"scorer options {sorted(scorer_kwargs)} apply only with model=")
        if isinstance(calibration, (str, Path)):
            from ...calibration import Calibration

            calibration = Calibration.load(calibration)
        self._scorer = scorer
        self._calibration = calibration

    @classmethod
    def class_name(cls) -> str:
        return "PointwiseReranker"

    @property
    def scorer(self) -> RelevanceScorer:
        return self._scorer

    def _start(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None):
        return begin_rerank(nodes, query_bundle, top_n=self.top_n, model_name=self._scorer.name, who="PointwiseReranker")

    @staticmethod
    def _end(nodes, candidates, ranked) -> list[NodeWithScore]:
        return end_rerank(nodes, candidates, ((r.candidate, r.score) for r in ranked))

    def _options(self) -> dict[str, Any]:
        return {"top_n": self.top_n, "fusion_weight": self.fusion_weight, "calibration": self._calibration}

    def _postprocess_nodes(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        if not nodes:
            return []
        query, candidates = self._start(nodes, query_bundle)
        return self._end(nodes, candidates, rerank_pointwise(self._scorer, query, candidates, **self._options()))

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if not nodes:
            return []
        query, candidates = self._start(nodes, query_bundle)
        ranked = await arerank_pointwise(self._scorer, query, candidates, **self._options())
        return self._end(nodes, candidates, ranked)


__all__ = ["PointwiseReranker"]
