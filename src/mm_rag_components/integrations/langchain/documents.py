"""Convert between our plain types and LangChain ``Document`` s / queries. No logic beyond that.

How an image travels in a ``Document``:

* ``metadata["image_path"]`` holds the image's file path or URL — the key LangChain's own
  ``ImageCaptionLoader`` writes — and ``page_content`` holds its caption (``""`` when there is
  none; the file name is never put there, so a scorer cannot read the answer from it);
* ``metadata["source"]`` (LangChain's generic origin key, written by our ingest) names the same
  file; a document marked ``metadata["modality"] == "image"`` without ``image_path`` (as
  ``UnstructuredImageLoader``-style loaders leave it) is read from ``source``;
* a ``data:`` URI in ``image_path`` is accepted as inline image data.

A **page** (a mixed ``"image+text"`` candidate) is a document whose ``page_content`` is the page
text and whose ``metadata["image_path"]`` is the page image, with ``metadata["modality"] ==
"image+text"`` (which brings it back as a page) and our 1-based ``metadata["page"]`` — unlike
``PyPDFLoader``'s 0-based ``page``.

Scores: our retriever writes ``metadata["retrieval_score"]``; rerankers write the new score under
``metadata["relevance_score"]`` (the key LangChain's Cohere/Flashrank compressors use) plus our
provenance keys (:mod:`mm_rag_components.types`). An incoming document's score is its
``relevance_score`` when an earlier stage set one, else its ``retrieval_score``.

Queries: a string, a :class:`~mm_rag_components.types.Query`, or a mapping
``{"text": ..., "image": ...}`` (image: path, bytes, base64, data URI or PIL image).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from os import PathLike
from typing import Any

from langchain_core.documents import Document

from ...errors import ConfigError
from ...rerank.base import finite_or_none
from ...types import MIXED, MODALITY, RETRIEVAL_SCORE, SOURCE, Candidate, Query

#: Metadata key of an image document's path or URL (LangChain's ``ImageCaptionLoader`` key).
IMAGE_PATH = "image_path"
#: Metadata key of the score a reranker gave (LangChain's compressor convention).
RELEVANCE_SCORE = "relevance_score"
#: Keys a mapping query may have.
QUERY_KEYS = ("text", "image")


def to_query(query: object) -> Query:
    """Our :class:`Query` from a string, a ``Query`` or a ``{"text", "image"}`` mapping."""
    if isinstance(query, Query):
        return query
    if isinstance(query, str):
        return Query(text=query)
    if isinstance(query, Mapping):
        unknown = sorted(set(map(str, query)) - set(QUERY_KEYS))
        if unknown:
            raise ConfigError(f"a query mapping takes the keys 'text' and 'image'; unknown: {', '.join(unknown)}")
        return Query(text=query.get("text") or None, image=query.get("image"))
    raise ConfigError(
        f"a query must be a string, a Query or a {{'text': ..., 'image': ...}} mapping, got {type(query).__name__}"
    )


def check_documents(documents: object) -> list[Document]:
    """``documents`` as a list of LangChain ``Document`` s, or a :class:`ConfigError`."""
    if isinstance(documents, (str, bytes, Mapping)) or not isinstance(documents, Sequence):
        raise ConfigError(f"documents must be a sequence of langchain Document, got {type(documents).__name__}")
    bad = [i for i, d in enumerate(documents) if not isinstance(d, Document)]
    if bad:
        raise ConfigError(f"documents {bad[:5]} are not langchain Document objects")
    return list(documents)


def candidate_to_document(candidate: Candidate) -> Document:
    """A retrieved :class:`Candidate` as a ``Document`` (images by path, see the module doc)."""
    metadata: dict[str, Any] = dict(candidate.metadata)
    metadata[MODALITY] = candidate.modality
    if candidate.score is not None:
        metadata[RETRIEVAL_SCORE] = candidate.score
    if candidate.modality in ("image", MIXED) and candidate.image_path is not None:
        metadata[IMAGE_PATH] = candidate.image_path
    return Document(id=candidate.id, page_content=candidate.text or "", metadata=metadata)


def document_to_candidate(document: Document, position: int) -> Candidate:
    """The :class:`Candidate` behind ``document`` (``position`` names documents without an id)."""
    metadata = dict(document.metadata)
    image = _image_of(metadata)
    inline = isinstance(image, str) and image[:5].lower() == "data:"
    return Candidate(
        id=str(document.id) if document.id is not None else f"doc-{position}",
        modality=MIXED if metadata.get(MODALITY) == MIXED else ("image" if image is not None else "text"),
        text=document.page_content or None,
        image_path=None if inline else image,
        score=_score_of(metadata),
        metadata=metadata,
        image=image if inline else None,
    )


def reranked_document(document: Document, candidate: Candidate) -> Document:
    """A new ``Document``: ``document``'s content and metadata, the core's provenance, and
    the candidate's score as ``relevance_score``."""
    metadata = {**document.metadata, **candidate.metadata, RELEVANCE_SCORE: candidate.score}
    return Document(id=document.id, page_content=document.page_content, metadata=metadata)


def _image_of(metadata: Mapping[str, Any]) -> str | None:
    value = metadata.get(IMAGE_PATH)
    key = IMAGE_PATH
    if value is None and metadata.get(MODALITY) == "image":  # a page's source is its document, not its image
        value, key = metadata.get(SOURCE), SOURCE
        if value is None:
            raise ConfigError("an image document needs metadata['image_path'] (or 'source')")
    if value is None:
        return None
    if isinstance(value, PathLike):
        return str(value)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"metadata[{key!r}] must be a path or URL string, got {value!r:.80}")
    return value


def _score_of(metadata: Mapping[str, Any]) -> float | None:
    for key in (RELEVANCE_SCORE, RETRIEVAL_SCORE):
        value = finite_or_none(metadata.get(key))
        if value is not None:
            return value
    return None


__all__ = [
    "IMAGE_PATH",
    "RELEVANCE_SCORE",
    "candidate_to_document",
    "check_documents",
    "document_to_candidate",
    "reranked_document",
    "to_query",
]
