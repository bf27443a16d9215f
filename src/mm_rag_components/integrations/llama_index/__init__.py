"""LlamaIndex adapters: a retriever and node postprocessors that delegate to the core."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "MultimodalRetriever": "retriever",
    "PointwiseReranker": "pointwise",
    "ListwiseReranker": "listwise",
    "RelevanceFilter": "filters",
    "candidate_to_node": "nodes",
    "node_to_candidate": "nodes",
    "query_from_bundle": "nodes",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = list(_LAZY)
