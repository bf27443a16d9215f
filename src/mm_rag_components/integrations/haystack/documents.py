"""Convert between our plain types and Haystack 3 objects. No logic beyond that.

How images travel (the convention of Haystack's own image components, e.g.
``DocumentToImageContent``): an **image document** carries the image file's path in
``meta["file_path"]`` and its caption (if any) as ``content``; an image that only exists in memory
travels as ``Document.blob`` (a ``ByteStream`` with an ``image/*`` MIME type). A document counts as
an image when ``meta["modality"] == "image"``, when its ``blob`` is an image, or when
``meta["file_path"]`` names an image file (``.png``, ``.jpg`` …); everything else is text.

Our provenance (``modality``, ``source``, ``sha256``, ``retrieval_score``, ``rerank_score`` …) lives
in ``meta`` beside the user's own keys, which are never dropped.

A **page** (a mixed ``"image+text"`` candidate) is a document with its page text as ``content``
and its page image as an image document's (``meta["file_path"]``, or ``blob``), plus
``meta["page_number"]`` (1-based, the key Haystack's ``DocumentToImageContent`` reads — it renders
that page when ``file_path`` is a PDF), so an image-aware generator gets the page image and any
generator gets its text; ``meta["modality"] == "image+text"`` brings it back as a page.

A **query image** may be a path (``str``/``Path``), raw bytes, a base64 string, a ``ByteStream``,
an ``ImageContent`` or a PIL image.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from haystack import Document
from haystack.dataclasses import ByteStream, ImageContent

from ...errors import ConfigError
from ...files import IMAGE_SUFFIXES
from ...media import is_url
from ...types import MIXED, MODALITY, PAGE, PROVENANCE_KEYS, RECORD_KEYS, RETRIEVAL_SCORE, SOURCE
from ...types import Candidate, ImageSource, Item, Query

#: Meta field holding an image document's file path (Haystack's image components read it).
FILE_PATH = "file_path"
#: Meta field holding an image document's URL (when its source is remote).
URL = "url"
#: Meta field holding a page document's 1-based page number (Haystack's PDF convention).
PAGE_NUMBER = "page_number"


def candidate_to_document(candidate: Candidate) -> Document:
    """A :class:`Candidate` as a ``Document`` (an image document keeps its path, never base64)."""
    meta: dict[str, Any] = dict(candidate.metadata)
    meta[MODALITY] = candidate.modality
    if candidate.score is not None:
        meta[RETRIEVAL_SCORE] = candidate.score
    blob = None
    if candidate.modality == MIXED and isinstance(candidate.metadata.get(PAGE), int):
        meta.setdefault(PAGE_NUMBER, candidate.metadata[PAGE])
    if candidate.modality in ("image", MIXED):
        if candidate.image_path:
            meta[URL if is_url(candidate.image_path) else FILE_PATH] = candidate.image_path
        if candidate.image is not None:
            blob = _blob(candidate.image)
    return Document(id=candidate.id, content=candidate.text, blob=blob, meta=meta, score=candidate.score)


def document_to_candidate(document: Document) -> Candidate:
    """The :class:`Candidate` behind a ``Document`` (see the module docstring for images)."""
    path, data = _document_image(document)
    declared = document.meta.get(MODALITY)
    is_image = path is not None or data is not None or declared == "image"
    return Candidate(
        id=document.id,
        modality=MIXED if declared == MIXED else ("image" if is_image else "text"),
        text=document.content or None,
        image_path=path,
        score=document.score,
        metadata=dict(document.meta),
        image=data,
    )


def check_documents(documents: object) -> list[Document]:
    """``documents`` as a list of ``Document``, or a :class:`ConfigError` saying what is wrong."""
    if not isinstance(documents, Sequence) or isinstance(documents, (str, bytes)):
        raise ConfigError(f"documents must be a list of haystack Document, got {type(documents).__name__}")
    bad = [i for i, d in enumerate(documents) if not isinstance(d, Document)]
    if bad:
        raise ConfigError(f"documents {bad[:5]} are not haystack Document objects")
    return list(documents)


def apply_result(
    documents: Sequence[Document], indices: Sequence[int], candidates: Sequence[Candidate]
) -> list[Document]:
    """Copies of ``documents[indices[k]]`` with ``candidates[k]``'s score and metadata, in that
    order; the originals are not touched and keep every meta key they had."""
    return [
        replace(documents[i], score=c.score, meta={**documents[i].meta, **c.metadata})
        for i, c in zip(indices, candidates)
    ]


def make_query(query: object, image: object = None) -> Query:
    """Our :class:`Query` from a run's ``query`` text and/or ``image`` input."""
    if query is not None and not isinstance(query, str):
        raise ConfigError(f"query must be a string or None, got {type(query).__name__}")
    return Query(text=query or None, image=query_image(image))


def query_image(image: object) -> ImageSource | None:
    """A query image input in a form :func:`mm_rag_components.media.load_image` reads."""
    if image is None or isinstance(image, (str, bytes)):
        return image
    if isinstance(image, Path):
        return str(image)
    if isinstance(image, ByteStream):
        return image.data
    if isinstance(image, ImageContent):
        try:
            return base64.b64decode(image.base64_image, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigError(f"ImageContent holds invalid base64 data: {exc}") from exc
    if hasattr(image, "getpixel"):  # a PIL image
        return image  # type: ignore[return-value]
    raise ConfigError(
        "image must be a path, bytes, base64 text, a ByteStream, an ImageContent or a PIL image; "
        f"got {type(image).__name__}"
    )


def document_to_item(document: Document) -> Item:
    """An :class:`Item` to ingest: image documents by path (or blob bytes) with their caption,
    text documents by content. Keys the index writes itself, and rerank provenance, are left out
    of the stored metadata. A text document's ``source`` is left unset (chunks of one file share
    their ``file_path``, and an item's source replaces older records of that source)."""
    path, data = _document_image(document)
    meta = {k: v for k, v in document.meta.items() if k not in RECORD_KEYS and k not in PROVENANCE_KEYS}
    if path is not None or data is not None:
        source = document.meta.get(SOURCE) or path
        image = data if data is not None else path
        return Item(text=document.content or None, image=image, source=source, metadata=meta)
    return Item(text=document.content or "", metadata=meta)  # empty text: reported as skipped by ingest


def _document_image(document: Document) -> tuple[str | None, bytes | None]:
    """The image file path/URL and/or inline bytes of an image document, else ``(None, None)``."""
    meta = document.meta
    declared = meta.get(MODALITY) in ("image", MIXED)
    blob = document.blob
    data = None
    if blob is not None and (declared or str(blob.mime_type or "").startswith("image/")):
        data = blob.data
    path = meta.get(FILE_PATH)
    if isinstance(path, Path):
        path = str(path)
    if not (isinstance(path, str) and path and (declared or Path(path).suffix.lower() in IMAGE_SUFFIXES)):
        path = meta.get(URL) if declared and is_url(meta.get(URL)) else None
    return path, data


def _blob(image: ImageSource) -> ByteStream:
    if hasattr(image, "getpixel"):  # a PIL image
        from ...generation.images import encode_image

        data, mime = encode_image(image)  # type: ignore[arg-type]
        return ByteStream(data=data, mime_type=mime)
    from ...media import read_image_bytes

    data, _ = read_image_bytes(image)
    import filetype  # a Haystack dependency

    return ByteStream(data=data, mime_type=filetype.guess_mime(data))


__all__ = [
    "FILE_PATH",
    "PAGE_NUMBER",
    "URL",
    "apply_result",
    "candidate_to_document",
    "check_documents",
    "document_to_candidate",
    "document_to_item",
    "make_query",
    "query_image",
]
