"""Relevance filters: decide which scored candidates are worth passing to the answering model.

A :class:`FilterPolicy` composes modes; a candidate is kept only if it passes every mode that is
set, checked in this order (the first failure is the recorded reason):

``missing_score``
    the candidate has no usable score (``None``/NaN: e.g. a reranker could not score it, its
    ``rerank_flag`` says why); see ``on_missing``;
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

import logging
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Iterator, Literal, Sequence

from .errors import ConfigError
from .types import FILTER_REASON, RERANK_SCORE, Candidate
from .validate import integer, no_unknown, number, one_of, positive_number, text

logger = logging.getLogger(__name__)

MISSING_SCORE = "missing_score"
BELOW_THRESHOLD = "below_threshold"
BELOW_MARGIN = "below_margin"
OUTSIDE_TOP_P = "outside_top_p"
OVER_MAX_K = "over_max_k"
DROP_REASONS: tuple[str, ...] = (MISSING_SCORE, BELOW_THRESHOLD, BELOW_MARGIN, OUTSIDE_TOP_P, OVER_MAX_K)

OnMissing = Literal["drop", "keep", "error"]


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


@dataclass
class Dropped:
    """A candidate the filter left out, its input position, and why."""

    candidate: Candidate
    index: int
    reason: str


@dataclass
class FilterResult:
    """Kept candidates (input order; those kept only by ``min_keep`` are copies carrying
    ``filter_reason`` metadata), their input positions, the dropped ones with reasons, the report."""

    kept: list[Candidate]
    kept_indices: list[int]
    dropped: list[Dropped]
    report: FilterReport

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self.kept)

    def __len__(self) -> int:
        return len(self.kept)


@dataclass(frozen=True)
class FilterPolicy:
    """Composable relevance-filter modes (see the module docstring). ``None`` disables a mode.

    ``score_key`` names the score read: ``"score"`` (the candidate's own score) or a metadata key
    such as ``"calibrated_score"``, ``"rerank_score"``, ``"listwise_score"``, ``"retrieval_score"``.
    Every setting is checked at construction (types, finite numbers, ranges).
    """

    score_key: str = "score"
    threshold: float | None = None
    max_k: int | None = None
    margin: float | None = None
    top_p: float | None = None
    temperature: float = 1.0
    min_keep: int = 0
    on_missing: OnMissing = "drop"

    def __post_init__(self) -> None:
        text("score_key", self.score_key)
        number("threshold", self.threshold, optional=True)
        integer("max_k", self.max_k, minimum=0, optional=True)
        number("margin", self.margin, minimum=0.0, optional=True)
        number("top_p", self.top_p, minimum=0.0, exclusive_minimum=True, maximum=1.0, optional=True)
        positive_number("temperature", self.temperature)
        integer("min_keep", self.min_keep, minimum=0)
        one_of("on_missing", self.on_missing, ("drop", "keep", "error"))

    @classmethod
    def from_kwargs(cls, **options: Any) -> "FilterPolicy":
        """A policy from keywords; a misspelt one (``treshold``) is a :class:`ConfigError`."""
        no_unknown("RelevanceFilter", options, [f.name for f in fields(cls)])
        return cls(**options)

    @classmethod
    def resolve(cls, policy: "FilterPolicy | None" = None, **options: Any) -> "FilterPolicy":
        """``policy`` or a policy built from options — not both (what every adapter accepts)."""
        if policy is None:
            return cls.from_kwargs(**options)
        if options:
            raise ConfigError("give policy= or filter options, not both")
        if not isinstance(policy, cls):
            raise ConfigError(f"policy must be a FilterPolicy, got {type(policy).__name__}")
        return policy

    def score_of(self, candidate: Candidate) -> object:
        return candidate.score if self.score_key == "score" else candidate.metadata.get(self.score_key)

    def apply(self, candidates: Sequence[Candidate]) -> FilterResult:
        """Filter ``candidates``; the input is not mutated."""
        bad = [i for i, c in enumerate(candidates) if not isinstance(c, Candidate)]
        if bad:
            raise ConfigError(f"items {bad[:5]} are not Candidate objects")
        kept, report = self.decide_candidates(candidates)
        out = []
        for i in kept:
            candidate = candidates[i]
            if i in report.restored:
                reason = f"{report.restored[i]} (kept by min_keep)"
                candidate = replace(candidate, metadata={**candidate.metadata, FILTER_REASON: reason})
            out.append(candidate)
        dropped = [Dropped(candidates[i], i, d) for i, d in enumerate(report.decisions) if d is not None]
        logger.info("relevance filter (%s): %s", self.score_key, report.summary())
        return FilterResult(out, kept, dropped, report)

    def decide_candidates(self, candidates: Sequence[Candidate]) -> tuple[list[int], FilterReport]:
        """:meth:`decide` on the candidates' scores. Scores a reranker flagged as missing (it
        could not score those candidates) are simply missing: ``on_missing`` applies to them even
        when no candidate has a score (rather than the error for a score key nobody carries)."""
        scores = [self.score_of(c) for c in candidates]
        unscored = all(RERANK_SCORE in c.metadata and c.metadata[RERANK_SCORE] is None  # a reranker's "no score"
                       for c, s in zip(candidates, scores) if _as_score(s) is None)
        return self._decide(scores, [c.id for c in candidates], explained=unscored)

    def decide(
        self, scores: Sequence[float | None], ids: Sequence[str] | None = None
    ) -> tuple[list[int], FilterReport]:
        """Indices to keep (input order) and the report. ``ids`` name items in the report."""
        return self._decide(scores, ids, explained=False)

    def _decide(
        self, scores: Sequence[float | None], ids: Sequence[str] | None, *, explained: bool
    ) -> tuple[list[int], FilterReport]:
        n = len(scores)
        if ids is not None and len(ids) != n:
            raise ConfigError(f"{len(ids)} ids for {n} scores")
        values = [_as_score(s) for s in scores]
        missing = [i for i, v in enumerate(values) if v is None]
        if missing and self.on_missing == "error":
            raise ConfigError(f"{len(missing)} of {n} items have no score (on_missing='error')")
        if n and len(missing) == n and self.on_missing == "drop" and not explained:
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


def _as_score(value: object) -> float | None:
    """A usable score: a real number that is not NaN (±inf are meaningful: unscorable / certain)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        score = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return None if math.isnan(score) else score


__all__ = [
    "BELOW_MARGIN",
    "BELOW_THRESHOLD",
    "DROP_REASONS",
    "Dropped",
    "FilterPolicy",
    "FilterReport",
    "FilterResult",
    "MISSING_SCORE",
    "OUTSIDE_TOP_P",
    "OVER_MAX_K",
]
