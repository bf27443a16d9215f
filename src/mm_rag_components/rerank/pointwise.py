"""Pointwise reranking over plain candidates: score each, optionally calibrate and fuse, sort."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import ConfigError
from ..scoring.base import PointScore, RelevanceScorer, ascore
from ..types import RETRIEVAL_SCORE, Candidate, Query

logger = logging.getLogger(__name__)

# Metadata keys written on every reranked candidate/node.
RERANK_SCORE = "rerank_score"
RERANK_LOGODDS = "rerank_logodds"
CALIBRATED_SCORE = "calibrated_score"
RERANK_FLAG = "rerank_flag"
PROVENANCE_KEYS = (RETRIEVAL_SCORE, RERANK_SCORE, RERANK_LOGODDS, CALIBRATED_SCORE, RERANK_FLAG)


class Calibrator(Protocol):
    """Anything that maps log-odds to calibrated probabilities (see :mod:`mm_rag_components.calibration`)."""

    def apply(self, logodds: Any) -> np.ndarray: ...


@dataclass
class Reranked:
    """A candidate with its new ``score`` (what the ranking sorts by) and how it was obtained."""

    candidate: Candidate
    score: float
    point: PointScore
    calibrated: float | None = None


def _finish(
    candidates: Sequence[Candidate],
    points: list[PointScore],
    *,
    top_n: int | None,
    fusion_weight: float | None,
    calibration: Calibrator | None,
) -> list[Reranked]:
    calibrated: list[float | None] = [None] * len(points)
    if calibration is not None:
        finite = [i for i, p in enumerate(points) if math.isfinite(p.logodds)]
        if finite:
            values = np.asarray(calibration.apply(np.array([points[i].logodds for i in finite], dtype=np.float64)))
            for i, value in zip(finite, values.tolist()):
                calibrated[i] = float(value)
        for i, p in enumerate(points):
            if not math.isfinite(p.logodds):
                calibrated[i] = 0.0
    missing_retrieval = fusion_weight is not None and any(c.score is None for c in candidates)
    if missing_retrieval:
        logger.warning("fusion: some candidates have no retrieval score; 0.0 is used for them")
    results = []
    for candidate, point, cal in zip(candidates, points, calibrated):
        relevance = cal if cal is not None else point.probability
        score = relevance if fusion_weight is None else (candidate.score or 0.0) + fusion_weight * relevance
        candidate.metadata.update(
            {
                RETRIEVAL_SCORE: candidate.score,
                RERANK_SCORE: point.probability,
                RERANK_LOGODDS: point.logodds,
                CALIBRATED_SCORE: cal,
                RERANK_FLAG: point.flag,
            }
        )
        results.append(Reranked(candidate, score, point, cal))
    # Candidates that could not be scored (log-odds -inf, flagged) are kept but ranked last.
    order = sorted(range(len(results)), key=lambda i: (not math.isfinite(results[i].point.logodds), -results[i].score, i))
    ranked = [results[i] for i in order]
    return ranked if top_n is None else ranked[:top_n]


def _check(query: Any, top_n: int | None) -> None:
    if not isinstance(query, Query):
        raise ConfigError("reranking needs a query (text, image, or both)")
    if top_n is not None and top_n < 1:
        raise ConfigError(f"top_n must be >= 1, got {top_n}")


def rerank_pointwise(
    scorer: RelevanceScorer,
    query: Query,
    candidates: Sequence[Candidate],
    *,
    top_n: int | None = None,
    fusion_weight: float | None = None,
    calibration: Calibrator | None = None,
) -> list[Reranked]:
    """Rerank ``candidates`` by p(relevant) — or ``retrieval + fusion_weight · p`` — best first.

    Candidates the scorer flags as unscorable (e.g. an unreadable image) are kept, ranked last.
    """
    _check(query, top_n)
    if not candidates:
        return []
    points = scorer.score(query, candidates)
    return _finish(candidates, points, top_n=top_n, fusion_weight=fusion_weight, calibration=calibration)


async def arerank_pointwise(
    scorer: RelevanceScorer,
    query: Query,
    candidates: Sequence[Candidate],
    *,
    top_n: int | None = None,
    fusion_weight: float | None = None,
    calibration: Calibrator | None = None,
) -> list[Reranked]:
    """Async :func:`rerank_pointwise` (the scorer's ``ascore`` when it has one)."""
    _check(query, top_n)
    if not candidates:
        return []
    points = await ascore(scorer, query, candidates)
    return _finish(candidates, points, top_n=top_n, fusion_weight=fusion_weight, calibration=calibration)


__all__ = [
    "CALIBRATED_SCORE",
    "PROVENANCE_KEYS",
    "RERANK_FLAG",
    "RERANK_LOGODDS",
    "RERANK_SCORE",
    "RETRIEVAL_SCORE",
    "Reranked",
    "arerank_pointwise",
    "rerank_pointwise",
]
