"""Plain data types shared by every layer. They know no framework and no model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

from .errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

Modality = Literal["text", "image"]
MODALITIES: tuple[Modality, ...] = ("text", "image")
#: Metadata key holding a candidate's incoming retrieval score (kept through reranking).
RETRIEVAL_SCORE = "retrieval_score"

#: Anything :func:`mm_rag_components.media.load_image` accepts: a path, raw bytes,
#: a base64 string (optionally a ``data:`` URI), a PIL image, or a URL (when enabled).
ImageSource = Union[str, Path, bytes, "Image.Image"]


@dataclass(frozen=True)
class Query:
    """A retrieval or rerank query: text, an image, or both (a composed query)."""

    text: str | None = None
    image: ImageSource | None = None

    def __post_init__(self) -> None:
        if self.text is not None and not isinstance(self.text, str):
            raise ConfigError(f"Query.text must be a string, got {type(self.text).__name__}")
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


__all__ = ["Modality", "MODALITIES", "RETRIEVAL_SCORE", "ImageSource", "Query", "Candidate", "Item"]
