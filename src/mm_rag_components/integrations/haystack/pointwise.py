"""Haystack component for pointwise MLLM reranking of text and image documents (convert and delegate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from haystack import component

from ... import config
from ...rerank.pointwise import PointwiseRanker
from ...rerank.options import PointwiseOptions, Unpack
from ...scoring.base import RelevanceScorer
from .common import decode_options, envelope, init_parameters
from .rerank_common import RerankComponent


@component
class PointwiseReranker(RerankComponent):
    """Rerank documents (text, image, or both) by an MLLM's p(relevant) for a text/image query.

    Give one of: a ready core ``reranker`` (:class:`~mm_rag_components.rerank.pointwise.PointwiseRanker`),
    a ``scorer`` (any ``RelevanceScorer``), or ``model`` (a name or local directory). Options
    (``top_n``, ``fusion_weight``, ``calibration`` and, with ``model``, the ``TransformersScorer``
    options such as ``template``, ``batch_size``, ``device``, ``dtype``) go to
    :meth:`PointwiseRanker.create`.

    The core is built at construction; with ``model`` nothing is read then (the scorer loads
    lazily): the model loads in :meth:`warm_up` (Haystack calls it before a run) or on first use,
    so a model that cannot load raises ``ModelError`` there. Options are checked at construction.

    Image documents (``meta["file_path"]`` or an image ``blob``) reach the scorer as image
    candidates. Inputs: ``documents``, ``query`` and/or ``image``, ``top_k``. Output ``documents``:
    copies, best first, ``score`` = the core's score; ``meta`` keeps every original key and adds
    ``retrieval_score``, ``rerank_score``, ``rerank_logodds``, ``calibrated_score``, ``rerank_flag``.
    Saving needs a scorer with ``config()`` (``ConfigError`` otherwise).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        scorer: RelevanceScorer | None = None,
        reranker: PointwiseRanker | None = None,
        **options: Unpack[PointwiseOptions],
    ) -> None:
        self._init_core(PointwiseRanker.create(model, scorer=scorer, reranker=reranker, **options))

    def to_dict(self) -> dict[str, Any]:
        """The core reranker's config (``config.to_dict``: scorer, template, calibration …, never
        weights), however the component was built."""
        return envelope(self, reranker=config.to_dict(self.reranker))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PointwiseReranker:
        """Rebuild from :meth:`to_dict` (and from the model-and-options shape of 0.1, read as given)."""
        params = init_parameters(cls, data)
        if "reranker" in params:
            return cls(reranker=config.from_dict(params["reranker"]))
        return cls(**decode_options(params))


__all__ = ["PointwiseReranker"]
