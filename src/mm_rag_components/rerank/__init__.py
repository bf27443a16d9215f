"""Reranking over plain candidates: pointwise (per-candidate p(yes)) and listwise (one ranking)."""

from .listwise import ListwiseRanker, ListwiseResult, borda_aggregate, plan_windows
from .parse import ParsedRanking, parse_ranking
from .pointwise import PROVENANCE_KEYS, Reranked, arerank_pointwise, rerank_pointwise

__all__ = [
    "PROVENANCE_KEYS",
    "ListwiseRanker",
    "ListwiseResult",
    "ParsedRanking",
    "Reranked",
    "arerank_pointwise",
    "borda_aggregate",
    "parse_ranking",
    "plan_windows",
    "rerank_pointwise",
]
