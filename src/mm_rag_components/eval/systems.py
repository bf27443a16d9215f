"""The systems compared in one run, all on the same retrieved candidates.

* ``retriever`` — the retrieval order;
* ``pointwise`` — a :class:`~mm_rag_components.rerank.pointwise.PointwiseRanker`'s order by
  p(relevant) (calibrated when the ranker has a calibration);
* ``fusion`` — ``retrieval + w · p``: the same scores, re-ordered by the core ranker with
  ``fusion_weight=w`` (scored once, so a sweep over ``w`` costs no model call);
* ``listwise`` — a :class:`~mm_rag_components.rerank.listwise.ListwiseRanker`'s full order;
* ``…+filter`` — a :class:`~mm_rag_components.filters.FilterPolicy` over another system's output.

Latency of a system is the time a query spends in it: retrieval plus its own stages (fusion counts
the pointwise scoring it needs; a filter counts its base system).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import BackendError
from ..filters import FilterPolicy
from ..rerank.listwise import ListwiseRanker
from ..rerank.base import reranked_copy
from ..rerank.pointwise import PointwiseRanker
from ..scoring.base import PointScore
from ..types import Candidate
from ..datasets.candidates import Retrieved, _progress
from ..datasets.task import EvalQuery


@dataclass
class Ranking:
    """One query's output: candidates best first (``kept`` order for filters), the query's
    latency in seconds, and for filters the kept corpus ids."""

    candidates: list[Candidate]
    seconds: float
    kept: list[str] | None = None

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.candidates]


@dataclass
class SystemRun:
    """A system's rankings per query id, and what defines it (``params``) or happened (``details``)."""

    name: str
    kind: str
    rankings: dict[str, Ranking]
    base: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


class _Replay:
    """A scorer that returns scores computed earlier (so the core ranker orders them)."""

    name = "replay"

    def __init__(self, points: Sequence[PointScore]) -> None:
        self.points = list(points)

    def score(self, query: Any, candidates: Sequence[Candidate]) -> list[PointScore]:
        return self.points


def retriever_run(retrieved: Mapping[str, Retrieved]) -> SystemRun:
    return SystemRun("retriever", "retriever", {q: Ranking(r.candidates, r.seconds) for q, r in retrieved.items()})


@dataclass
class PointwiseScores:
    """Scores of every candidate of every query (input order) and the scoring time per query."""

    ranker: PointwiseRanker
    points: dict[str, list[PointScore]]
    seconds: dict[str, float]
    flags: dict[str, int]


def score_pointwise(
    ranker: PointwiseRanker, queries: Iterable[EvalQuery], retrieved: Mapping[str, Retrieved], *, progress: bool = False
) -> PointwiseScores:
    """Score each query's candidates once with ``ranker.scorer``."""
    ranker.warm_up()
    points: dict[str, list[PointScore]] = {}
    seconds: dict[str, float] = {}
    flags: dict[str, int] = {}
    for query in _progress(list(queries), progress, f"pointwise {ranker.name}"):
        candidates = retrieved[query.id].candidates
        start = time.perf_counter()
        scored = ranker.scorer.score(query.to_query(), candidates) if candidates else []
        seconds[query.id] = time.perf_counter() - start
        if len(scored) != len(candidates):
            raise BackendError(f"scorer {ranker.name!r} returned {len(scored)} scores for {len(candidates)} candidates")
        points[query.id] = list(scored)
        for point in scored:
            for flag in (point.flag or "").split(","):
                if flag:
                    flags[flag] = flags.get(flag, 0) + 1
    return PointwiseScores(ranker, points, seconds, flags)


def reranked_run(
    name: str, kind: str, scores: PointwiseScores, queries: Iterable[EvalQuery], retrieved: Mapping[str, Retrieved],
    fusion_weight: float | None = None,
) -> SystemRun:
    """The pointwise order (``fusion_weight=None``) or the fused order, from stored scores."""
    rankings = {}
    for query in queries:
        candidates = retrieved[query.id].candidates
        start = time.perf_counter()
        core = PointwiseRanker(_Replay(scores.points[query.id]), fusion_weight=fusion_weight, calibration=scores.ranker.calibration)
        ranked = core.rerank(query.to_query(), candidates).candidates
        own = time.perf_counter() - start
        rankings[query.id] = Ranking(ranked, retrieved[query.id].seconds + scores.seconds[query.id] + own)
    params = {"fusion_weight": fusion_weight} if fusion_weight is not None else {}
    return SystemRun(name, kind, rankings, params=params, details={"flags": dict(scores.flags)} if scores.flags else {})


def listwise_run(
    name: str, ranker: ListwiseRanker, queries: Iterable[EvalQuery], retrieved: Mapping[str, Retrieved], *,
    progress: bool = False,
) -> SystemRun:
    """The listwise ranker's full order per query, with parse statuses and flags counted."""
    ranker.warm_up()
    rankings: dict[str, Ranking] = {}
    statuses: dict[str, int] = {}
    flags: dict[str, int] = {}
    windows = 0
    for query in _progress(list(queries), progress, f"listwise {ranker.name}"):
        candidates = retrieved[query.id].candidates
        start = time.perf_counter()
        result = ranker.rank(query.to_query(), candidates) if candidates else None
        out = [_with_score(candidates[i], ranker, result, i) for i in result.order] if result is not None else []
        own = time.perf_counter() - start
        rankings[query.id] = Ranking(out, retrieved[query.id].seconds + own)
        for window in result.windows if result is not None else []:
            windows += 1
            statuses[window.status] = statuses.get(window.status, 0) + 1
            if window.flag:
                flags[window.flag] = flags.get(window.flag, 0) + 1
    return SystemRun(name, "listwise", rankings, details={"windows": windows, "parse_status": statuses, "window_flags": flags})


def _with_score(candidate: Candidate, ranker: ListwiseRanker, result: Any, index: int) -> Candidate:
    """The copy ``ListwiseRanker.rerank`` makes, for the full order (its ``top_n`` would cut it)."""
    return reranked_copy(candidate, result.scores[index], ranker.result_metadata(result, index))


def filter_run(name: str, policy: FilterPolicy, base: SystemRun, queries: Iterable[EvalQuery]) -> SystemRun:
    """``policy`` applied to ``base``'s output per query: kept candidates in ``base``'s order."""
    rankings = {}
    for query in queries:
        ranking = base.rankings[query.id]
        start = time.perf_counter()
        result = policy.apply(ranking.candidates) if ranking.candidates else None
        own = time.perf_counter() - start
        kept = list(result.kept) if result is not None else []
        rankings[query.id] = Ranking(kept, ranking.seconds + own, kept=[c.id for c in kept])
    return SystemRun(name, "filter", rankings, base=base.name, params=policy_settings(policy))


def policy_settings(policy: FilterPolicy) -> dict[str, Any]:
    """The settings of ``policy`` that differ from the defaults."""
    default = FilterPolicy()
    return {f.name: getattr(policy, f.name) for f in fields(policy) if getattr(policy, f.name) != getattr(default, f.name)}


def filter_decisions(policy: FilterPolicy, base: SystemRun, queries: Iterable[EvalQuery]) -> dict[str, list[str]]:
    """Kept ids per query without copying candidates (fast, for threshold sweeps)."""
    out = {}
    for query in queries:
        candidates = base.rankings[query.id].candidates
        if not candidates:
            out[query.id] = []
            continue
        kept, _ = policy.decide_candidates(candidates)
        out[query.id] = [candidates[i].id for i in kept]
    return out


__all__ = [
    "PointwiseScores", "Ranking", "SystemRun", "filter_decisions", "filter_run", "listwise_run", "policy_settings",
    "reranked_run", "retriever_run", "score_pointwise",
]
