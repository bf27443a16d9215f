"""Haystack 3 components that delegate to the core: retrieve, rerank (pointwise / listwise),
filter and ingest text and image documents.

Image documents carry the image file in ``meta["file_path"]`` (Haystack's convention) and the
caption as ``content``; see :mod:`.documents`. Load a saved pipeline with
``Pipeline.loads(text, allowed_modules=["mm_rag_components"])`` (Haystack imports component
classes only from trusted modules).
"""

from __future__ import annotations

from ..._lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "MultimodalRetriever": "retriever",
    "PointwiseReranker": "pointwise",
    "ListwiseReranker": "listwise",
    "RelevanceFilter": "filters",
    "MultimodalDocumentWriter": "writer",
    "HaystackChatGenerator": "generator",
    "candidate_to_document": "documents",
    "document_to_candidate": "documents",
    "make_query": "documents",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
