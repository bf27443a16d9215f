"""Plain data types shared by every layer. They know no framework and no model."""

from __future__ import annotations

import logging

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

from .errors import ConfigError

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

Modality = Literal["text", "image", "image+text"]
#: What the store holds and retrieval searches: a record is a text or an image.
MODALITIES: tuple[Modality, ...] = ("text", "image")
#: A candidate holding both an image and its text (e.g. a document page: its rendered image and
#: its text layer), judged as one.
MIXED: Modality = "image+text"

# --------------------------------------------------------------------------------------------
# Metadata keys, in one place. Components write these on candidates (and adapters copy them onto
# framework nodes/documents) so a user can see why an item is where it is.
# --------------------------------------------------------------------------------------------
#: Stored with every record at ingest.
MODALITY = "modality"
SOURCE = "source"
FILE_NAME = "file_name"
SHA256 = "sha256"
CHUNK = "chunk"
#: Documents (PDFs) are ingested page by page; every record of a page (its image, its text
#: chunks) carries the document's title, the 1-based page number, the page count and a page id
#: shared by the page's records (``SOURCE`` is the document's path). Records sharing a page id
#: can be grouped again into one mixed candidate. These keys are not reserved: items may carry
#: them too (a ``page_id`` of your own groups your records the same way).
TITLE = "title"
PAGE = "page"
PAGE_COUNT = "page_count"
PAGE_ID = "page_id"
PAGE_KEYS = (TITLE, PAGE, PAGE_COUNT, PAGE_ID)
#: On a page's image record: the stored page image (a JPEG file named by the sha256 of its
#: pixels), which retrieval gives as ``Candidate.image_path`` (``SOURCE`` is the document).
IMAGE_PATH = "image_path"
#: Written by retrieval: raw cosine similarity, rank within the modality, score scale.
COSINE = "cosine"
RANK = "rank"
SCORE_SCALE = "score_scale"
#: Written on a page candidate (retrieval with ``pages=True``): the page's rank among the image
#: hits and among the text hits (absent when it was not among them).
IMAGE_RANK = "image_rank"
TEXT_RANK = "text_rank"
#: The candidate's incoming (retrieval) score, kept through reranking.
RETRIEVAL_SCORE = "retrieval_score"
#: Pointwise reranking: p(relevant), its log-odds, the calibrated probability, and a flag saying
#: why a candidate could not be scored normally (``None`` when it was).
RERANK_SCORE = "rerank_score"
RERANK_LOGODDS = "rerank_logodds"
CALIBRATED_SCORE = "calibrated_score"
RERANK_FLAG = "rerank_flag"
#: Listwise reranking: final rank (1 = best), Borda score in [0, 1], parse status, the model's
#: reasoning, and window flags (timeout, generator_error, parse_fallback …).
LISTWISE_RANK = "listwise_rank"
LISTWISE_SCORE = "listwise_score"
LISTWISE_PARSE_STATUS = "listwise_parse_status"
LISTWISE_RATIONALE = "listwise_rationale"
LISTWISE_FLAG = "listwise_flag"
#: A flag shared by scorers, rerankers and the answer stage: a candidate's image could not be
#: shown to a model that reads text only (it was judged on its text alone).
IMAGE_NOT_SHOWN = "image_not_shown"
#: Filtering: on an item kept only because of ``min_keep``, the reason it would have been dropped.
FILTER_REASON = "filter_reason"

#: Keys written by ingest and retrieval (user metadata may not use them).
RECORD_KEYS = (MODALITY, SOURCE, FILE_NAME, SHA256, CHUNK, IMAGE_PATH, COSINE, RANK, SCORE_SCALE, IMAGE_RANK, TEXT_RANK)
POINTWISE_KEYS = (RETRIEVAL_SCORE, RERANK_SCORE, RERANK_LOGODDS, CALIBRATED_SCORE, RERANK_FLAG)
LISTWISE_KEYS = (RETRIEVAL_SCORE, LISTWISE_RANK, LISTWISE_SCORE, LISTWISE_PARSE_STATUS, LISTWISE_RATIONALE, LISTWISE_FLAG)
#: Every provenance key a reranker or filter may write.
PROVENANCE_KEYS = tuple(dict.fromkeys((*POINTWISE_KEYS, *LISTWISE_KEYS, FILTER_REASON)))

#: Anything :func:`mm_rag_components.media.load_image` accepts: a path, raw bytes,
#: a base64 string (optionally a ``data:`` URI), a PIL image, or a URL (when enabled).
ImageSource = Union[str, Path, bytes, "Image.Image"]


def _valid_unicode(text: str | None, what: str) -> str | None:
    """``text`` with lone surrogates (which crash tokenizers and UTF-8 encoders) replaced by
    U+FFFD, logged; valid text is returned as is."""
    if not text:
        return text
    from .unicode import clean_text

    cleaned, changed = clean_text(text)
    if changed:
        logger.warning("invalid Unicode (lone surrogates) in the %s replaced with U+FFFD", what)
    return cleaned


def join_flags(*flags: str | None) -> str | None:
    """Comma-joined distinct flags, ``None`` when there are none."""
    seen = list(dict.fromkeys(part for flag in flags if flag for part in flag.split(",") if part))
    return ",".join(seen) if seen else None


@dataclass(frozen=True)
class Query:
    """A retrieval or rerank query: text, an image, or both (a composed query)."""

    text: str | None = None
    image: ImageSource | None = None

    def __post_init__(self) -> None:
        if self.text is not None and not isinstance(self.text, str):
            raise ConfigError(f"Query.text must be a string, got {type(self.text).__name__}")
        object.__setattr__(self, "text", _valid_unicode(self.text, "query text"))
        if (self.text is None or not self.text.strip()) and self.image is None:
            raise ConfigError("a query needs text, an image, or both; got neither")

    @property
    def modality(self) -> str:
        """``"text"``, ``"image"`` or ``"image+text"``."""
        if self.image is not None and self.text:
            return "image+text"
        return "image" if self.image is not None else "text"


@dataclass
class Candidate:
    """One retrieved item, with where it came from and why it is here.

    ``image_path`` is a file path or URI, never a base64 blob. ``score`` is the retrieval
    score on the scale described by ``metadata["score_scale"]``.
    """

    id: str
    modality: Modality
    text: str | None = None
    image_path: str | None = None
    score: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: Inline image data (bytes, base64, PIL) when the candidate has no path or URL.
    image: ImageSource | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.text is not None and not isinstance(self.text, str):
            raise ConfigError(f"Candidate.text must be a string or None, got {type(self.text).__name__}")
        self.text = _valid_unicode(self.text, f"candidate {self.id!r:.60} text")

    @property
    def image_source(self) -> ImageSource | None:
        """What to load this candidate's image from: inline data, else its path or URL."""
        return self.image if self.image is not None else self.image_path


@dataclass
class Item:
    """Something to ingest: a text, an image, or both, plus user metadata."""

    text: str | None = None
    image: ImageSource | None = None
    source: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.text is None and self.image is None:
            raise ConfigError("an Item needs text or an image")


__all__ = [
    "CALIBRATED_SCORE",
    "CHUNK",
    "COSINE",
    "Candidate",
    "FILE_NAME",
    "FILTER_REASON",
    "IMAGE_NOT_SHOWN",
    "IMAGE_PATH",
    "IMAGE_RANK",
    "ImageSource",
    "Item",
    "LISTWISE_FLAG",
    "LISTWISE_KEYS",
    "LISTWISE_PARSE_STATUS",
    "LISTWISE_RANK",
    "LISTWISE_RATIONALE",
    "LISTWISE_SCORE",
    "MIXED",
    "MODALITIES",
    "MODALITY",
    "Modality",
    "PAGE",
    "PAGE_COUNT",
    "PAGE_ID",
    "PAGE_KEYS",
    "POINTWISE_KEYS",
    "PROVENANCE_KEYS",
    "Query",
    "RANK",
    "RECORD_KEYS",
    "RERANK_FLAG",
    "RERANK_LOGODDS",
    "RERANK_SCORE",
    "RETRIEVAL_SCORE",
    "SCORE_SCALE",
    "SHA256",
    "SOURCE",
    "TEXT_RANK",
    "TITLE",
    "join_flags",
]
