"""Pointwise reranking: score each candidate on its own (p(relevant)), optionally calibrate and
fuse with the retrieval score, sort.

The order is by ``score`` = p(relevant) — the calibrated probability when a calibration is set —
or, with ``fusion_weight=w``, ``retrieval + w · p``. Candidates the scorer could not score (an
unreadable image, a prompt too long, a server that failed or gave no answer log-probabilities)
have no score: ``score``, ``rerank_score``, ``rerank_logodds`` and ``calibrated_score`` are
``None`` (never a made-up 0), ``rerank_flag`` says why (``no_score`` when the scorer did not), the
retrieval score stays in ``retrieval_score``, and they are ranked last in retrieval order (or kept
at their positions), never dropped; a filter applies its ``on_missing`` rule to them. Incoming
retrieval scores that are not finite numbers count as missing (flagged
``missing_retrieval_score`` when fusion needs them).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..backed import Backed
from ..errors import BackendError, ConfigError
from ..scoring.base import PointScore, RelevanceScorer, ascore, sigmoid
from ..types import CALIBRATED_SCORE, RERANK_FLAG, RERANK_LOGODDS, RERANK_SCORE, Candidate, Query
from ..validate import no_unknown, number, one_of, positive_int
from .base import RerankResult, check_query, cut, finite_or_none, join_flags, reranked_copy

logger = logging.getLogger(__name__)

MISSING_RETRIEVAL_SCORE = "missing_retrieval_score"
INVALID_SCORE = "invalid_score"
#: The flag of a candidate left unscored by a scorer that did not say why.
NO_SCORE = "no_score"
#: Where unscored candidates go: after the scored ones, or at their input positions.
UNSCORED = ("last", "keep")


class Calibrator(Protocol):
    """Maps log-odds to calibrated probabilities (see :mod:`mm_rag_components.calibration`)."""

    def apply(self, logodds: Any) -> np.ndarray: ...


def _calibration(value: Calibrator | str | Path | None) -> Calibrator | None:
    if isinstance(value, (str, Path)):
        from ..calibration import Calibration

        return Calibration.load(value)
    if value is not None and not callable(getattr(value, "apply", None)):
        raise ConfigError(f"calibration must be a Calibration, a JSON path or None, got {type(value).__name__}")
    return value


class PointwiseRanker(Backed):
    """Rerank by a :class:`~mm_rag_components.scoring.base.RelevanceScorer`'s p(relevant).

    Build it from a ready ``scorer`` or with :meth:`create` (a model name or directory plus
    scorer options). ``top_n`` keeps the best n; ``fusion_weight`` and ``calibration`` as in
    the module docstring (``calibration`` may be a JSON path written by ``Calibration.save``).
    ``unscored``: where candidates without a score go (a backend that gave no answer
    log-probabilities, an unreadable image …) — ``"last"`` (default) after every scored one,
    ``"keep"`` at their input (retrieval) positions, the scored ones sorted around them.
    """

    BACKEND = "scorer"

    def __init__(
        self,
        scorer: RelevanceScorer,
        *,
        top_n: int | None = None,
        fusion_weight: float | None = None,
        calibration: Calibrator | str | Path | None = None,
        unscored: str = "last",
    ) -> None:
        if not callable(getattr(scorer, "score", None)):
            raise ConfigError(f"scorer must have score(query, candidates), got {type(scorer).__name__}")
        self.scorer = scorer
        self.top_n = positive_int("top_n", top_n, optional=True)
        self.fusion_weight = number("fusion_weight", fusion_weight, optional=True)
        self.calibration = _calibration(calibration)
        self.unscored = one_of("unscored", unscored, UNSCORED)

    @classmethod
    def create(
        cls,
        model: str | Path | None = None,
        *,
        scorer: RelevanceScorer | None = None,
        reranker: PointwiseRanker | None = None,
        **options: Any,
    ) -> PointwiseRanker:
        """The one place a pointwise reranker is built from keywords (every adapter uses it).

        Give exactly one of ``reranker`` (returned as is), ``scorer``, or ``model`` (a name or
        directory for :class:`~mm_rag_components.scoring.transformers_scorer.TransformersScorer`;
        options it does not take go to the scorer). Unknown options are a :class:`ConfigError`.
        """
        if sum(x is not None for x in (model, scorer, reranker)) != 1:
            raise ConfigError("give exactly one of model (a name or directory), scorer or reranker")
        if reranker is not None:
            no_unknown("with reranker=, no other option applies", options)
            if not isinstance(reranker, PointwiseRanker):
                raise ConfigError(f"reranker must be a PointwiseRanker, got {type(reranker).__name__}")
            return reranker
        own = {k: options.pop(k) for k in ("top_n", "fusion_weight", "calibration", "unscored") if k in options}
        if scorer is None:
            from ..scoring.transformers_scorer import TransformersScorer

            no_unknown("PointwiseRanker / TransformersScorer", options, _parameters(TransformersScorer))
            scorer = TransformersScorer(model, **options)  # type: ignore[arg-type]
        else:
            no_unknown("PointwiseRanker (scorer options apply only with model=)", options)
        return cls(scorer, **own)

    def config(self) -> dict[str, Any]:
        return {
            "scorer": self.scorer,
            "top_n": self.top_n,
            "fusion_weight": self.fusion_weight,
            "calibration": self.calibration,
            "unscored": self.unscored,
        }

    # ranking -----------------------------------------------------------------------------
    def rerank(self, query: Query, candidates: Sequence[Candidate]) -> RerankResult:
        query, items = check_query(query, candidates)
        if not items:
            return RerankResult([], [], 0)
        return self._finish(items, self.scorer.score(query, items))

    async def arerank(self, query: Query, candidates: Sequence[Candidate]) -> RerankResult:
        """Async :meth:`rerank`: the scorer's native ``ascore`` when it has one."""
        query, items = check_query(query, candidates)
        if not items:
            return RerankResult([], [], 0)
        return self._finish(items, await ascore(self.scorer, query, items))

    def _calibrated(self, logodds: list[float]) -> list[float | None]:
        out: list[float | None] = [None] * len(logodds)
        if self.calibration is None:
            return out
        finite = [i for i, z in enumerate(logodds) if math.isfinite(z)]
        if finite:
            values = np.asarray(self.calibration.apply(np.array([logodds[i] for i in finite], dtype=np.float64)))
            for i, value in zip(finite, values.tolist()):
                out[i] = finite_or_none(value)
        return [None if not math.isfinite(z) else 0.0 if v is None else v for z, v in zip(logodds, out)]

    def _finish(self, candidates: list[Candidate], points: Sequence[PointScore]) -> RerankResult:
        if len(points) != len(candidates):
            raise BackendError(f"scorer {self.name!r} returned {len(points)} scores for {len(candidates)} candidates")
        logodds = [_logodds(p) for p in points]
        calibrated = self._calibrated(logodds)
        scores: list[float | None] = []
        provenance: list[dict[str, Any]] = []
        missing = 0
        for candidate, point, z, cal in zip(candidates, points, logodds, calibrated):
            flag = point.flag
            if not math.isfinite(z):  # not scored: missing, never a made-up number
                if getattr(point, "logodds", None) != -math.inf:
                    flag = join_flags(flag, INVALID_SCORE)  # NaN / +inf / junk from a backend
                scores.append(None)
                provenance.append({RERANK_SCORE: None, RERANK_LOGODDS: None, CALIBRATED_SCORE: None, RERANK_FLAG: flag or NO_SCORE})
                continue
            probability = sigmoid(z)
            relevance = cal if cal is not None else probability
            score = relevance
            if self.fusion_weight is not None:
                retrieval = finite_or_none(candidate.score)
                if retrieval is None:
                    missing += 1
                    flag = join_flags(flag, MISSING_RETRIEVAL_SCORE)
                score = (retrieval or 0.0) + self.fusion_weight * relevance
            scores.append(score)
            provenance.append({
                RERANK_SCORE: probability,
                RERANK_LOGODDS: z,
                CALIBRATED_SCORE: cal,
                RERANK_FLAG: flag,
            })
        if missing:
            logger.warning("fusion: %d candidate(s) have no finite retrieval score; 0.0 is used (flagged)", missing)
        order = _order(logodds, scores, self.unscored)
        order = cut(order, self.top_n)
        ranked = [reranked_copy(candidates[i], scores[i], provenance[i]) for i in order]
        return RerankResult(ranked, order, len(candidates), details=[points[i] for i in order])


def is_unscored(candidate: Candidate) -> bool:
    """True for a candidate a pointwise reranker could not score (its ``rerank_score`` is ``None``)."""
    return RERANK_SCORE in candidate.metadata and candidate.metadata[RERANK_SCORE] is None


def _order(logodds: list[float], scores: list[float | None], unscored: str) -> list[int]:
    """Best first; ties keep input order. Unscored candidates (log-odds -inf) are never dropped:
    ranked last in input order, or (``"keep"``) left at their input positions."""
    scored = sorted((i for i, z in enumerate(logodds) if math.isfinite(z)), key=lambda i: (-scores[i], i))  # type: ignore[operator]
    rest = [i for i, z in enumerate(logodds) if not math.isfinite(z)]
    if unscored == "last":
        return scored + rest
    fill = iter(scored)
    return [i if not math.isfinite(logodds[i]) else next(fill) for i in range(len(logodds))]


def _logodds(point: PointScore) -> float:
    """The point's log-odds; NaN or +inf (a broken backend) count as unscorable (-inf)."""
    z = finite_or_none(getattr(point, "logodds", None))
    if z is not None:
        return z
    return -math.inf


def _parameters(cls: type) -> list[str]:
    return [name for name in inspect.signature(cls.__init__).parameters if name != "self"]


__all__ = ["Calibrator", "INVALID_SCORE", "MISSING_RETRIEVAL_SCORE", "NO_SCORE", "PointwiseRanker", "UNSCORED", "is_unscored"]
