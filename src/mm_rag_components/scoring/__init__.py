"""Pointwise relevance scoring: the scorer protocol, prompt templates, the local transformers scorer."""

from .base import PointScore, RelevanceScorer, sigmoid
from .templates import BUILTIN_TEMPLATES, PointwiseTemplate, get_template

__all__ = ["BUILTIN_TEMPLATES", "PointScore", "PointwiseTemplate", "RelevanceScorer", "TransformersScorer", "get_template", "sigmoid"]


def __getattr__(name: str):
    if name == "TransformersScorer":  # imports transformers lazily
        from .transformers_scorer import TransformersScorer

        return TransformersScorer
    raise AttributeError(name)
