"""What a pointwise relevance scorer returns, and the protocol every scorer follows."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..types import IMAGE_NOT_SHOWN, Candidate, Query

#: Flags a scorer may set on a candidate it could not score normally.
UNREADABLE_IMAGE = "unreadable_image"
TRUNCATED = "truncated"
#: A candidate with neither an image nor text (nothing to judge): ranked last.
EMPTY_CANDIDATE = "empty_candidate"
#: An image candidate without an image source, scored on its text alone.
MISSING_IMAGE = "missing_image"


@dataclass(frozen=True)
class PointScore:
    """``logodds = z_yes − z_no`` at the answer position; ``probability = sigmoid(logodds)``.

    A candidate that could not be scored (``flag`` says why) has ``logodds = -inf``.
    """

    logodds: float
    probability: float
    flag: str | None = None

    @classmethod
    def from_logodds(cls, logodds: float, flag: str | None = None) -> PointScore:
        return cls(float(logodds), sigmoid(logodds), flag)


def sigmoid(x: float) -> float:
    """Numerically stable logistic function; ``sigmoid(-inf) == 0``."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


@runtime_checkable
class RelevanceScorer(Protocol):
    """Scores each candidate's relevance to a query, independently of the others."""

    name: str

    def score(self, query: Query, candidates: Sequence[Candidate]) -> list[PointScore]: ...


async def ascore(scorer: RelevanceScorer, query: Query, candidates: Sequence[Candidate]) -> list[PointScore]:
    """The scorer's own ``ascore`` when it has one; local compute otherwise runs in a worker thread."""
    native = getattr(scorer, "ascore", None)
    if native is not None:
        return await native(query, candidates)
    return await asyncio.to_thread(scorer.score, query, candidates)


__all__ = ["EMPTY_CANDIDATE", "IMAGE_NOT_SHOWN", "MISSING_IMAGE", "PointScore", "RelevanceScorer", "TRUNCATED", "UNREADABLE_IMAGE", "ascore", "sigmoid"]
