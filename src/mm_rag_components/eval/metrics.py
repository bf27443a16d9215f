"""Metrics: ranking quality through ranx, kept-context precision/recall of filters, latency.

ranx (and its numba kernels) load on the first call, never at import.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from ..errors import ConfigError

#: The metrics reported by default (ranx names).
DEFAULT_METRICS: tuple[str, ...] = ("recall@1", "recall@5", "recall@10", "mrr", "ndcg@10")

Qrels = Mapping[str, Mapping[str, int]]
#: Stands in for an empty ranking (no corpus id can be this).
_NOTHING = "\x00nothing"


def ranking_metrics(
    qrels: Qrels, rankings: Mapping[str, Sequence[str]], metrics: Sequence[str] = DEFAULT_METRICS
) -> dict[str, float]:
    """Mean of each metric over the queries of ``qrels`` (ranx ``evaluate``).

    ``rankings[query_id]`` lists corpus ids, best first (a repeated id counts once, at its first
    place); a query without a ranking scores 0. Only relevance > 0 counts as relevant.
    """
    if not qrels:
        raise ConfigError("no queries to evaluate")
    metrics = list(metrics)
    if not metrics or not all(isinstance(m, str) and m for m in metrics):
        raise ConfigError(f"metrics must be a non-empty list of ranx metric names, got {metrics!r}")
    from ranx import evaluate

    judged = {q: {d: int(r) for d, r in docs.items() if r > 0} for q, docs in qrels.items()}
    empty = [q for q, docs in judged.items() if not docs]
    if empty:
        raise ConfigError(f"{len(empty)} query(ies) have no relevant document in the qrels, e.g. {empty[0]!r}")
    run: dict[str, dict[str, float]] = {}
    for query_id in judged:
        ids = list(dict.fromkeys(rankings.get(query_id, ())))
        # an empty ranking gets one id that no qrels hold, so the run matches the qrels query for query
        run[query_id] = {doc: float(len(ids) - position) for position, doc in enumerate(ids)} or {_NOTHING: 0.0}
    if all(list(r) == [_NOTHING] for r in run.values()):  # nothing retrieved at all: every metric is 0
        return {name: 0.0 for name in metrics}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba type-safety chatter
        try:
            # plain dicts, not ranx.Qrels/Run: those keep numba typed dicts whose methods compile
            # anew in every process (~10 s) and per doc-id width; dicts take ranx's cached path
            values = evaluate(judged, run, metrics)
        except (KeyError, ValueError, TypeError, AssertionError) as exc:
            raise ConfigError(f"ranx cannot compute {metrics}: {exc}") from exc
    if not isinstance(values, dict):
        values = {metrics[0]: values}
    return {name: float(values[name]) for name in metrics}


@dataclass(frozen=True)
class KeptContext:
    """What a filter passed on, pooled over queries: ``precision`` = relevant kept / kept,
    ``recall`` = relevant kept / relevant among the candidates (``None`` when undefined),
    ``f1``, ``mean_kept`` per query and ``empty_rate`` (share of queries with nothing kept)."""

    precision: float | None
    recall: float | None
    f1: float | None
    mean_kept: float
    empty_rate: float

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


def kept_context(
    qrels: Qrels, kept: Mapping[str, Sequence[str]], candidates: Mapping[str, Sequence[str]]
) -> KeptContext:
    """Kept-context precision and recall over the queries of ``qrels`` (see :class:`KeptContext`)."""
    if not qrels:
        raise ConfigError("no queries to evaluate")
    hits = kept_total = relevant_total = empty = 0
    for query_id, docs in qrels.items():
        relevant = {d for d, r in docs.items() if r > 0}
        chosen = set(kept.get(query_id, ()))
        hits += len(chosen & relevant)
        kept_total += len(chosen)
        relevant_total += len(set(candidates.get(query_id, ())) & relevant)
        empty += not chosen
    precision = hits / kept_total if kept_total else None
    recall = hits / relevant_total if relevant_total else None
    f1 = None
    if precision is not None and recall is not None:
        f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    n = len(qrels)
    return KeptContext(precision, recall, f1, kept_total / n, empty / n)


def latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    """Mean, median and 95th percentile of per-query latencies, in milliseconds."""
    import numpy as np

    values = np.asarray([s for s in seconds if math.isfinite(s)], dtype=np.float64) * 1000.0
    if values.size == 0:
        return {"mean_ms": math.nan, "p50_ms": math.nan, "p95_ms": math.nan}
    return {
        "mean_ms": float(values.mean()),
        "p50_ms": float(np.percentile(values, 50)),
        "p95_ms": float(np.percentile(values, 95)),
    }


__all__ = ["DEFAULT_METRICS", "KeptContext", "kept_context", "latency_stats", "ranking_metrics"]
