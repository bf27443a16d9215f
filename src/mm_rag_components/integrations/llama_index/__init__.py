"""LlamaIndex adapters: a retriever and node postprocessors that delegate to the core."""

from __future__ import annotations

from ..._lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "MultimodalRetriever": "retriever",
    "PointwiseReranker": "pointwise",
    "ListwiseReranker": "listwise",
    "RelevanceFilter": "filters",
    "candidate_to_node": "nodes",
    "node_to_candidate": "nodes",
    "query_from_bundle": "nodes",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
