"""Relevance filters: decide which scored candidates are worth passing to the answering model.

A :class:`FilterPolicy` composes modes; a candidate is kept only if it passes every mode that is
set, checked in this order (the first failure is the recorded reason):

``missing_score``
    the candidate has no usable score (``None``/NaN); see ``on_missing``;
``below_threshold``
    absolute threshold: ``score < threshold``;
``below_margin``
    relative margin: ``score < best − margin``;
``outside_top_p``
    top-p mass: scores are soft-maxed (``temperature``) and only the smallest best-first prefix
    reaching mass ``top_p`` stays;
``over_max_k``
    at most ``max_k`` survivors, best first. With ``threshold`` this is *adaptive up-to-k*:
    keep at most k whose score ≥ τ.

Finally ``min_keep`` restores the best dropped candidates so an answer always has some context.
Kept candidates stay in input order. The :class:`FilterReport` counts drops per reason.
Use a score on a comparable scale — calibrated probabilities (see :mod:`.calibration`) make a
threshold mean the same thing for every query.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence, TypeVar

from .errors import ConfigError
from .types import Candidate

MISSING_SCORE = "missing_score"
BELOW_THRESHOLD = "below_threshold"
BELOW_MARGIN = "below_margin"
OUTSIDE_TOP_P = "outside_top_p"
OVER_MAX_K = "over_max_k"
DROP_REASONS: tuple[str, ...] = (MISSING_SCORE, BELOW_THRESHOLD, BELOW_MARGIN, OUTSIDE_TOP_P, OVER_MAX_K)

OnMissing = Literal["drop", "keep", "error"]
T = TypeVar("T")


@dataclass
class FilterReport:
    """What a filter did. ``reasons`` counts dropped items per reason (only reasons that
    occurred); ``decisions[i]`` is ``None`` for a kept item or its drop reason; ``restored``
    lists input indices kept only because of ``min_keep`` (with the reason they had);
    ``dropped_ids`` maps ids to reasons when ids were given.
    """

    total: int
    kept: int
    reasons: dict[str, int]
    decisions: list[str | None]
    restored: dict[int, str] = field(default_factory=dict)
    dropped_ids: dict[str, str] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return self.total - self.kept

    def summary(self) -> str:
        """One readable line, e.g. ``kept 3 of 10; dropped below_threshold=5, over_max_k=2``."""
        text = f"kept {self.kept} of {self.total}"
        if self.reasons:
            text += "; dropped " + ", ".join(f"{reason}={count}" for reason, count in self.reasons.items())
        if self.restored:
            text += f"; {len(self.restored)} kept by min_keep"
        return text


@dataclass(frozen=True)
class FilterPolicy:
    """Composable relevance-filter modes (see the module docstring). ``None`` disables a mode."""

    threshold: float | None = None
    max_k: int | None = None
    margin: float | None = None
    top_p: float | None = None
    temperature: float = 1.0
    min_keep: int = 0
    on_missing: OnMissing = "drop"

    def __post_init__(self) -> None:
        if self.threshold is not None and math.isnan(self.threshold):
            raise ConfigError("threshold must be a number, got NaN")
        if self.max_k is not None and self.max_k < 0:
            raise ConfigError(f"max_k must be >= 0, got {self.max_k}")
        if self.margin is not None and not (self.margin >= 0):
            raise ConfigError(f"margin must be >= 0, got {self.margin}")
        if self.top_p is not None and not (0 < self.top_p <= 1):
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ConfigError(f"temperature must be positive, got {self.temperature}")
        if self.min_keep < 0:
            raise ConfigError(f"min_keep must be >= 0, got {self.min_keep}")
        if self.on_missing not in ("drop", "keep", "error"):
            raise ConfigError(f"on_missing must be 'drop', 'keep' or 'error', got {self.on_missing!r}")

    def decide(
        self, scores: Sequence[float | None], ids: Sequence[str] | None = None
    ) -> tuple[list[int], FilterReport]:
        """Indices to keep (input order) and the report. ``ids`` name items in the report."""
        n = len(scores)
        if ids is not None and len(ids) != n:
            raise ConfigError(f"{len(ids)} ids for {n} scores")
        values = [_as_score(s) for s in scores]
        missing = [i for i, v in enumerate(values) if v is None]
        if missing and self.on_missing == "error":
            raise ConfigError(f"{len(missing)} of {n} items have no score (on_missing='error')")
        if n and len(missing) == n and self.on_missing == "drop":
            raise ConfigError(
                "no item carries the score this filter reads; check the score key "
                "(or pass on_missing='keep')"
            )
        decisions: list[str | None] = [None] * n
        for i in missing:
            if self.on_missing == "drop":
                decisions[i] = MISSING_SCORE
        scored = [i for i, v in enumerate(values) if v is not None]
        best = max((values[i] for i in scored), default=None)  # type: ignore[type-var]
        for i in scored:
            value = values[i]
            assert value is not None
            if self.threshold is not None and value < self.threshold:
                decisions[i] = BELOW_THRESHOLD
            elif self.margin is not None and best is not None and value < best - self.margin:
                decisions[i] = BELOW_MARGIN
        if self.top_p is not None and scored:
            for i in self._outside_top_p(values, scored):
                if decisions[i] is None:
                    decisions[i] = OUTSIDE_TOP_P
        if self.max_k is not None:
            survivors = sorted(
                (i for i in scored if decisions[i] is None), key=lambda i: (-values[i], i)  # type: ignore[operator]
            )
            for i in survivors[self.max_k :]:
                decisions[i] = OVER_MAX_K
        restored = self._restore(values, decisions)
        kept = [i for i in range(n) if decisions[i] is None]
        reasons: dict[str, int] = {}
        for reason in DROP_REASONS:
            count = sum(1 for d in decisions if d == reason)
            if count:
                reasons[reason] = count
        dropped_ids = {ids[i]: d for i, d in enumerate(decisions) if d is not None} if ids is not None else {}
        return kept, FilterReport(n, len(kept), reasons, decisions, restored, dropped_ids)

    def _outside_top_p(self, values: list[float | None], scored: list[int]) -> list[int]:
        order = sorted(scored, key=lambda i: (-values[i], i))  # type: ignore[operator]
        top = values[order[0]]
        assert top is not None
        if top == -math.inf:  # every score is -inf: no information, keep them all equally
            weights = [1.0] * len(order)
        elif top == math.inf:  # infinite scores take all the mass
            weights = [1.0 if values[i] == math.inf else 0.0 for i in order]
        else:
            weights = [math.exp((values[i] - top) / self.temperature) for i in order]  # type: ignore[operator]
        total = sum(weights)
        mass = 0.0
        for position, (i, weight) in enumerate(zip(order, weights)):
            mass += weight / total
            if mass >= self.top_p - 1e-12:  # type: ignore[operator]
                return order[position + 1 :]
        return []

    def _restore(self, values: list[float | None], decisions: list[str | None]) -> dict[int, str]:
        """Bring back the best dropped items until ``min_keep`` are kept; returns index → reason."""
        kept = sum(1 for d in decisions if d is None)
        need = min(self.min_keep, len(decisions)) - kept
        if need <= 0:
            return {}
        dropped = [i for i, d in enumerate(decisions) if d is not None]
        dropped.sort(key=lambda i: (values[i] is None, -(values[i] or 0.0) if values[i] is not None else 0.0, i))
        restored = {}
        for i in dropped[:need]:
            restored[i] = decisions[i]  # type: ignore[assignment]
            decisions[i] = None
        return restored


def filter_candidates(
    candidates: Sequence[Candidate],
    policy: FilterPolicy,
    score_of: Callable[[Candidate], float | None] | None = None,
) -> tuple[list[Candidate], FilterReport]:
    """Apply ``policy`` to candidates (``score_of`` defaults to the retrieval ``score``)."""
    read = score_of or (lambda c: c.score)
    kept, report = policy.decide([read(c) for c in candidates], [c.id for c in candidates])
    return [candidates[i] for i in kept], report


def _as_score(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


__all__ = [
    "BELOW_MARGIN",
    "BELOW_THRESHOLD",
    "DROP_REASONS",
    "FilterPolicy",
    "FilterReport",
    "MISSING_SCORE",
    "OUTSIDE_TOP_P",
    "OVER_MAX_K",
    "filter_candidates",
]
