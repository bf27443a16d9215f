"""Reranking over plain candidates: pointwise (per-candidate p(yes)) and listwise (one ranking)."""

from .pointwise import PROVENANCE_KEYS, Reranked, arerank_pointwise, rerank_pointwise

__all__ = ["PROVENANCE_KEYS", "Reranked", "arerank_pointwise", "rerank_pointwise"]
