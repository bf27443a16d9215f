"""LangChain adapters: a retriever and document compressors that delegate to the core.

Images travel in ``Document.metadata["image_path"]`` (see :mod:`.documents`); queries may be a
string, a :class:`~mm_rag_components.types.Query` or ``{"text": ..., "image": ...}``.
"""

from __future__ import annotations

from ..._lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "MultimodalRetriever": "retriever",
    "MultimodalReranker": "rerank_common",
    "RerankedDocuments": "rerank_common",
    "PointwiseReranker": "pointwise",
    "ListwiseReranker": "listwise",
    "RelevanceFilter": "filters",
    "LangChainGenerator": "generator",
    "IMAGE_PATH": "documents",
    "RELEVANCE_SCORE": "documents",
    "candidate_to_document": "documents",
    "document_to_candidate": "documents",
    "to_query": "documents",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
