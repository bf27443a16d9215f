"""Tune on one split, report on the other: the fusion weight and the filter threshold.

Each sweep records its objective on the tune split (which chooses) and on the held-out split
(shown, never used to choose), so a report can show how well the choice carries over.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..filters import FilterPolicy
from ..datasets.candidates import Retrieved
from ..datasets.task import EvalQuery
from .metrics import Qrels, kept_context, ranking_metrics
from .systems import PointwiseScores, SystemRun, filter_decisions, reranked_run

#: Fusion weights tried by default (0 = retrieval order; 100 ≈ the reranker's order).
DEFAULT_FUSION_GRID: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 100.0)
#: Most thresholds tried (quantiles of the tune scores beyond that).
MAX_THRESHOLDS = 101


@dataclass
class Sweep:
    """Objective values per setting: ``points`` are ``{"value", "tune", "held_out"}``."""

    system: str
    parameter: str
    objective: str
    chosen: float
    points: list[dict[str, float | None]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"system": self.system, "parameter": self.parameter, "objective": self.objective,
                "chosen": self.chosen, "points": self.points}


def _qrels(qrels: Qrels, queries: Sequence[EvalQuery]) -> dict[str, Mapping[str, int]]:
    return {q.id: qrels[q.id] for q in queries}


def tune_fusion(
    name: str, scores: PointwiseScores, tune: Sequence[EvalQuery], held_out: Sequence[EvalQuery],
    retrieved: Mapping[str, Retrieved], qrels: Qrels, metric: str, grid: Sequence[float],
) -> tuple[SystemRun, Sweep]:
    """The fused run whose weight maximises ``metric`` on ``tune`` (ties: the smaller weight)."""
    if not tune:
        raise ConfigError("tuning the fusion weight needs a tune split (tune_fraction > 0) or a fixed weight")
    weights = sorted({_weight(w) for w in grid})
    if not weights:
        raise ConfigError("fusion_grid must hold at least one weight")
    queries = [*tune, *held_out]
    best: tuple[float, SystemRun] | None = None
    points = []
    for weight in weights:
        run = reranked_run(name, "fusion", scores, queries, retrieved, fusion_weight=weight)
        rankings = {q: r.ids for q, r in run.rankings.items()}
        on_tune = ranking_metrics(_qrels(qrels, tune), rankings, [metric])[metric]
        on_held = ranking_metrics(_qrels(qrels, held_out), rankings, [metric])[metric] if held_out else None
        points.append({"value": weight, "tune": on_tune, "held_out": on_held})
        if best is None or on_tune > best[0] + 1e-12:
            best = (on_tune, run)
    assert best is not None
    run = best[1]
    run.params["tuned"] = True
    return run, Sweep(name, "fusion_weight", metric, run.params["fusion_weight"], points)


def _weight(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"fusion weights must be finite numbers >= 0, got {value!r}")
    return float(value)


def tune_threshold(
    name: str, options: Mapping[str, Any], base: SystemRun, tune: Sequence[EvalQuery],
    held_out: Sequence[EvalQuery], qrels: Qrels,
) -> tuple[FilterPolicy, Sweep]:
    """The filter policy (``options`` plus a threshold) with the best kept-context F1 on ``tune``
    (ties: the higher threshold). Thresholds tried: the tune scores (quantiles when many)."""
    import numpy as np

    if not tune:
        raise ConfigError("tuning the filter threshold needs a tune split (tune_fraction > 0) or a fixed threshold")
    probe = FilterPolicy.from_kwargs(**options)
    values = []
    for query in tune:
        for candidate in base.rankings[query.id].candidates:
            score = probe.score_of(candidate)
            if isinstance(score, (int, float)) and not isinstance(score, bool) and math.isfinite(score):
                values.append(float(score))
    if not values:
        raise ConfigError(f"{base.name}: no finite {probe.score_key!r} on the tune split to tune a threshold on")
    thresholds = sorted(set(values))
    if len(thresholds) > MAX_THRESHOLDS:
        thresholds = sorted(set(np.quantile(values, np.linspace(0.0, 1.0, MAX_THRESHOLDS)).tolist()))
    candidates = {q.id: base.rankings[q.id].ids for q in [*tune, *held_out]}
    best: tuple[float, FilterPolicy] | None = None
    points = []
    for threshold in thresholds:
        policy = FilterPolicy.from_kwargs(**{**options, "threshold": threshold})
        on_tune = kept_context(_qrels(qrels, tune), filter_decisions(policy, base, tune), candidates).f1
        on_held = kept_context(_qrels(qrels, held_out), filter_decisions(policy, base, held_out), candidates).f1 if held_out else None
        points.append({"value": threshold, "tune": on_tune, "held_out": on_held})
        score = -1.0 if on_tune is None else on_tune
        if best is None or score >= best[0]:
            best = (score, policy)
    assert best is not None
    return best[1], Sweep(name, "threshold", "kept_f1", float(best[1].threshold), points)  # type: ignore[arg-type]


__all__ = ["DEFAULT_FUSION_GRID", "MAX_THRESHOLDS", "Sweep", "tune_fusion", "tune_threshold"]
