"""LlamaIndex node postprocessor for pointwise MLLM reranking (convert and delegate)."""

from __future__ import annotations

from pathlib import Path

from ...rerank.pointwise import PointwiseRanker
from ...rerank.options import PointwiseOptions, Unpack
from ...scoring.base import RelevanceScorer
from .rerank_common import RerankPostprocessor


class PointwiseReranker(RerankPostprocessor):
    """Rerank nodes (text, image, or both) by an MLLM's p(relevant) for a text/image query.

    Pass a ready core ``reranker`` (:class:`~mm_rag_components.rerank.pointwise.PointwiseRanker`),
    or ``model`` (a name or local directory) / ``scorer`` plus options, which build one through
    :meth:`PointwiseRanker.create` (``top_n``, ``fusion_weight``, ``calibration`` and the
    ``TransformersScorer`` options such as ``template``, ``batch_size``, ``device``, ``dtype``).
    The node score becomes the core's score; metadata keeps ``retrieval_score``, ``rerank_score``,
    ``rerank_logodds``, ``calibrated_score`` and ``rerank_flag``.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        reranker: PointwiseRanker | None = None,
        scorer: RelevanceScorer | None = None,
        **options: Unpack[PointwiseOptions],
    ) -> None:
        super().__init__(PointwiseRanker.create(model, scorer=scorer, reranker=reranker, **options))

    @classmethod
    def class_name(cls) -> str:
        return "PointwiseReranker"

    @property
    def scorer(self) -> RelevanceScorer:
        return self.reranker.scorer  # type: ignore[attr-defined]


__all__ = ["PointwiseReranker"]
