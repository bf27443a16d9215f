"""Candidates as parts of a chat prompt: their images loaded and resized to a pixel budget,
their text clipped, and a flag for each image that could not be shown. Shared by the answer
stage and the listwise reranker."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import ConfigError, MediaError
from ..media import load_image
from ..types import IMAGE_NOT_SHOWN, MIXED, Candidate, Query
from .base import Part

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

logger = logging.getLogger(__name__)

#: Images in a chat prompt are scaled down to at most this many pixels by default.
DEFAULT_MAX_IMAGE_PIXELS = 448 * 448


@dataclass(frozen=True)
class PromptEntry:
    """A candidate as shown in a prompt: its text, its (resized) image, and whether an image it
    has could not be shown (``"missing"``: unreadable; ``"unseen"``: the model reads text only)."""

    text: str | None
    image: "Image.Image | None"
    image_note: str | None = None


#: Per-candidate flags for images that could not be shown.
FLAG_IMAGE_ERROR = "image_error"
FLAG_IMAGE_NOT_SHOWN = IMAGE_NOT_SHOWN


class PreparedPrompt(NamedTuple):
    """The query image (resized, or ``None``), one :class:`PromptEntry` per candidate, and each
    candidate's image flag (``image_error``, ``image_not_shown`` or ``None``)."""

    query_image: "Image.Image | None"
    entries: list[PromptEntry]
    image_flags: list[str | None]


def prepare_entries(
    query: Query,
    candidates: Sequence[Candidate],
    *,
    sees_images: bool,
    allow_urls: bool = False,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    image_of: Callable[[Candidate], Any] | None = None,
    who: str = "the model",
) -> PreparedPrompt:
    """Load and resize the query's and candidates' images for a chat prompt.

    An unreadable candidate image is described (``image_error``), never fatal; a model that reads
    text only gets image descriptions (``image_not_shown``) and refuses an image-only query.
    """
    query_image = None
    if query.image is not None:
        if not sees_images:
            if not query.text:
                raise ConfigError(f"{who} reads text only; it cannot take an image-only query")
            logger.warning("%s reads text only; the query image is left out", who)
        else:
            query_image = resize_to_budget(load_image(query.image, allow_urls=allow_urls), max_image_pixels)
    entries: list[PromptEntry] = []
    flags: list[str | None] = []
    for candidate in candidates:
        source = image_of(candidate) if image_of is not None else candidate.image_source
        image, note = None, None
        if source is not None and not sees_images:
            note = "unseen"
        elif source is not None:
            try:
                image = resize_to_budget(load_image(source, allow_urls=allow_urls), max_image_pixels)
            except MediaError as exc:
                logger.warning("candidate %s: image unusable, shown as text only: %s", candidate.id, exc)
                note = "missing"
        elif candidate.modality in ("image", MIXED):
            logger.warning("%s candidate %s has no image source", candidate.modality, candidate.id)
            note = "missing"
        entries.append(PromptEntry(candidate.text, image, note))
        flags.append({"missing": FLAG_IMAGE_ERROR, "unseen": FLAG_IMAGE_NOT_SHOWN}.get(note or ""))
    return PreparedPrompt(query_image, entries, flags)


def resize_to_budget(image: "Image.Image", max_pixels: int | None) -> "Image.Image":
    """``image`` scaled down (aspect kept) so that width × height ≤ ``max_pixels``."""
    if max_pixels is None:
        return image
    width, height = image.size
    if width * height <= max_pixels:
        return image
    from PIL import Image

    scale = math.sqrt(max_pixels / (width * height))
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def clip_text(text: str, limit: int | None) -> str:
    """``text`` stripped and cut to ``limit`` characters (an ellipsis marks the cut)."""
    text = text.strip()
    if limit is not None and len(text) > limit:
        return text[: max(0, limit - 1)].rstrip() + "…"
    return text


def merge_text(parts: Sequence[Part]) -> list[Part]:
    """Join neighbouring text parts with newlines (images stay separate parts)."""
    merged: list[Part] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] = f"{merged[-1]}\n{part}"
        else:
            merged.append(part)
    return merged


__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS", "FLAG_IMAGE_ERROR", "FLAG_IMAGE_NOT_SHOWN", "PreparedPrompt", "PromptEntry",
    "clip_text", "merge_text", "prepare_entries", "resize_to_budget",
]
