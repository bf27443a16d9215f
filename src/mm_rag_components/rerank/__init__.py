"""Reranking over plain candidates, behind one contract (:class:`Reranker`):

* :class:`PointwiseRanker` — each candidate's p(relevant) from a relevance scorer;
* :class:`ListwiseRanker` — one ranking per window from a (multimodal) LLM's chain of thought.

Both return a :class:`RerankResult` of new candidates, best first.
"""

from .base import RerankResult, Reranker
from ..generation.base import ChatTurn, ListwiseGenerator  # ListwiseGenerator: the former name of Generator
from .listwise import ListwiseRanker, ListwiseResult
from .listwise_prompts import COT_PROMPT, DIRECT_PROMPT, ListwisePrompt
from .parse import ParsedRanking, parse_ranking
from .pointwise import PointwiseRanker
from .windows import borda_aggregate, plan_windows

__all__ = [
    "COT_PROMPT",
    "ChatTurn",
    "DIRECT_PROMPT",
    "ListwiseGenerator",
    "ListwisePrompt",
    "ListwiseRanker",
    "ListwiseResult",
    "ParsedRanking",
    "PointwiseRanker",
    "RerankResult",
    "Reranker",
    "borda_aggregate",
    "parse_ranking",
    "plan_windows",
]
