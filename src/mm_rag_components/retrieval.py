"""Route a query (text, image, or both) to the right collections and merge the hits.

Scales, documented:

* **One shared space** (texts embedded by the CLIP text tower): every hit's ``score`` is the
  cosine similarity to the query vector in that space (``score_scale="cosine"``), so image and
  text hits merge by score.
* **Separate text embedder**: text hits' cosines come from another model and are not comparable
  with image hits'. Each modality is ranked on its own and the lists merge by reciprocal-rank
  fusion, ``score = 1 / (rrf_k + rank)`` (``score_scale="rrf"``); the raw cosine stays in
  ``metadata["cosine"]``.

Composed queries (image + text): the query vector in the image space is
``normalise(w · e_image + (1 − w) · e_text)`` with ``w = image_weight`` (default 0.5). A separate
text collection is queried with the text alone; an image-only query skips it with a note.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError
from .media import load_image
from .store import Hit
from .types import MODALITIES, Candidate, Query

if TYPE_CHECKING:  # pragma: no cover
    from .index import MultimodalIndex

logger = logging.getLogger(__name__)


@dataclass
class RetrievalOptions:
    """What to retrieve: which modalities, how many of each, how to fuse a composed query."""

    modalities: Sequence[str] = MODALITIES
    top_k: int = 5
    image_top_k: int | None = None
    text_top_k: int | None = None
    image_weight: float = 0.5
    where: dict[str, Any] | None = None
    rrf_k: int = 60
    allow_urls: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.modalities) - set(MODALITIES)
        if unknown or not self.modalities:
            raise ConfigError(f"modalities must be a non-empty subset of {MODALITIES}, got {list(self.modalities)}")
        for name in ("top_k", "image_top_k", "text_top_k"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        if not 0.0 <= self.image_weight <= 1.0:
            raise ConfigError(f"image_weight must be in [0, 1], got {self.image_weight}")

    def k(self, modality: str) -> int:
        specific = self.image_top_k if modality == "image" else self.text_top_k
        return specific or self.top_k


@dataclass
class RetrievalResult:
    candidates: list[Candidate]
    notes: list[str] = field(default_factory=list)


def _normalise(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def query_vector(index: MultimodalIndex, query: Query, *, image_weight: float = 0.5, allow_urls: bool = False) -> np.ndarray:
    """The query's vector in the image embedder's space (composed queries fused, see module doc)."""
    embedder = index.image_embedder
    parts: list[tuple[float, np.ndarray]] = []
    if query.image is not None:
        image = load_image(query.image, allow_urls=allow_urls, max_pixels=index.max_pixels)
        parts.append((image_weight if query.text else 1.0, embedder.embed_images([image], show_progress=False)[0]))
    if query.text:
        parts.append((1.0 - image_weight if query.image is not None else 1.0, embedder.embed_texts([query.text], show_progress=False)[0]))
    return _normalise(sum(weight * vec for weight, vec in parts))


def _candidate(hit: Hit, modality: str, score: float, scale: str) -> Candidate:
    meta = {**hit.metadata, "cosine": hit.similarity, "score_scale": scale}
    return Candidate(
        id=hit.id,
        modality=modality,  # type: ignore[arg-type]
        text=hit.document,
        image_path=hit.metadata.get("source") if modality == "image" else None,
        score=score,
        metadata=meta,
    )


def retrieve(index: MultimodalIndex, query: Query, options: RetrievalOptions | None = None) -> RetrievalResult:
    """Retrieve candidates for ``query`` from ``index`` (see the module doc for scales)."""
    options = options or RetrievalOptions()
    notes: list[str] = []
    shared_vector = query_vector(index, query, image_weight=options.image_weight, allow_urls=options.allow_urls)
    per_modality: dict[str, list[Hit]] = {}
    for modality in options.modalities:
        if modality == "image":
            store, vector = index.image_store, shared_vector
        elif index.shared_space:
            store, vector = index.text_store, shared_vector
        elif not query.text:
            note = "text collection skipped: it uses a separate text embedder and the query has no text"
            logger.info(note)
            notes.append(note)
            continue
        else:
            store = index.text_store
            vector = index.text_embedder.embed_texts([query.text], show_progress=False)[0]  # type: ignore[union-attr]
        per_modality[modality] = store.query(vector, options.k(modality), where=options.where)

    candidates: list[Candidate] = []
    if index.shared_space or len(per_modality) < 2:
        for modality, hits in per_modality.items():
            candidates.extend(_candidate(h, modality, h.similarity, "cosine") for h in hits)
    else:
        for modality, hits in per_modality.items():
            candidates.extend(
                _candidate(h, modality, 1.0 / (options.rrf_k + rank), "rrf") for rank, h in enumerate(hits, start=1)
            )
    candidates.sort(key=lambda c: -(c.score or 0.0))
    return RetrievalResult(candidates, notes)


__all__ = ["RetrievalOptions", "RetrievalResult", "query_vector", "retrieve"]
