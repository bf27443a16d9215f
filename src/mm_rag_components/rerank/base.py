"""The one reranker contract: ``rerank`` / ``arerank(query, candidates) -> RerankResult``.

Pointwise and listwise rerankers differ only in how they compute the order. Both return new
:class:`~mm_rag_components.types.Candidate` objects (the input is never mutated), best first,
cut to ``top_n``; each carries its new ``score`` and its provenance in ``metadata`` under the
key constants of :mod:`mm_rag_components.types`. Framework adapters call this contract and
nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from ..errors import ConfigError
from ..types import RETRIEVAL_SCORE, Candidate, Query, join_flags  # noqa: F401 - join_flags: re-exported


@dataclass
class RerankResult:
    """Reranked candidates, best first, and where each came from.

    ``indices[k]`` is the input position of ``candidates[k]``; ``total`` counts the input;
    ``details`` holds what the method knows beyond scores (a ``ListwiseResult`` for listwise).
    Iterating a result iterates its candidates.
    """

    candidates: list[Candidate]
    indices: list[int]
    total: int
    details: Any = field(default=None, repr=False)

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self.candidates)

    def __len__(self) -> int:
        return len(self.candidates)

    def __getitem__(self, position: int) -> Candidate:
        return self.candidates[position]

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.candidates]


@runtime_checkable
class Reranker(Protocol):
    """What every reranker offers (and all the framework adapters use)."""

    name: str
    top_n: int | None

    def rerank(self, query: Query, candidates: Sequence[Candidate]) -> RerankResult: ...

    async def arerank(self, query: Query, candidates: Sequence[Candidate]) -> RerankResult: ...

    def warm_up(self) -> None: ...

    def config(self) -> dict[str, Any]: ...


def finite_or_none(value: object) -> float | None:
    """``value`` as a float when it is a finite real number, else ``None`` (NaN, inf, junk)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def check_query(query: object, candidates: object) -> tuple[Query, list[Candidate]]:
    """The query and a list of candidates, or a :class:`ConfigError` saying what is wrong."""
    if not isinstance(query, Query):
        raise ConfigError(f"reranking needs a Query (text, image, or both), got {type(query).__name__}")
    if isinstance(candidates, (str, bytes)) or not isinstance(candidates, Sequence):
        raise ConfigError(f"candidates must be a sequence of Candidate, got {type(candidates).__name__}")
    bad = [i for i, c in enumerate(candidates) if not isinstance(c, Candidate)]
    if bad:
        raise ConfigError(f"candidates {bad[:5]} are not Candidate objects")
    return query, list(candidates)


def reranked_copy(candidate: Candidate, score: float | None, provenance: dict[str, Any]) -> Candidate:
    """A copy of ``candidate`` with its new score (``None``: it could not be scored); the incoming score is kept as
    ``retrieval_score`` unless an earlier stage recorded one already."""
    metadata = dict(candidate.metadata)
    if RETRIEVAL_SCORE not in metadata:
        metadata[RETRIEVAL_SCORE] = finite_or_none(candidate.score)
    metadata.update(provenance)
    return replace(candidate, score=score, metadata=metadata)


def cut(order: list[int], top_n: int | None) -> list[int]:
    return order if top_n is None else order[:top_n]


__all__ = ["RerankResult", "Reranker", "check_query", "cut", "finite_or_none", "join_flags", "reranked_copy"]
