"""Route a query (text, image, or both) to the right collections and merge the hits.

No framework here: :func:`retrieve` takes a :class:`~mm_rag_components.index.MultimodalIndex`
and a :class:`~mm_rag_components.types.Query` and returns :class:`Candidate` objects.

Score scales (``candidate.metadata["score_scale"]``):

* ``"cosine"`` — **one shared space** (texts embedded by the image embedder's text tower, or a
  single modality retrieved): ``score`` is the cosine similarity ``1 - cosine distance`` between
  the query vector and the record, in [-1, 1]. Image and text hits merge by this score.
* ``"rrf"`` — **separate text embedder** and both modalities retrieved: text cosines come from
  another model and are not comparable with image cosines, so each modality is ranked on its
  own and the lists merge by reciprocal-rank fusion, ``score = 1 / (rrf_k + rank)`` (rank from 1
  within the modality; ``rrf_k`` defaults to 60). Ties keep the ``modalities`` order.

Every candidate keeps its raw ``metadata["cosine"]`` and its ``metadata["rank"]`` within its
modality.

Pages (``pages=True``): records that share a ``page_id`` (a PDF page's image and text chunks, or
your own records) come back as **one candidate per page** — ``modality="image+text"`` holding the
page image and the page text — and every candidate, page or plain record, is scored on the
``"rrf"`` scale with each page counted once per list and its image and text ranks summed
(:mod:`~mm_rag_components.page_candidates` says how and why). Each collection is searched deeper
until it yields ``top_k`` distinct pages (or runs out), so chunks of one page do not crowd others
out. ``pages=False`` (the default) returns records exactly as above.

Composed queries (image + text): the query vector in the image embedder's space is
``normalise(w * e_image + (1 - w) * e_text)`` with ``w = image_weight`` (default 0.5; 1 = image
only, 0 = text only), where ``e_image`` and ``e_text`` are the unit-norm image and text
embeddings. That vector searches the image collection (and the text collection in a shared
space). A separate text collection is searched with the query's text alone through its own
embedder; an image-only query skips it, with a logged warning and a note in
:attr:`RetrievalResult.notes`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError
from .validate import no_unknown
from .media import load_image
from .page_candidates import count_groups, page_candidates
from .store import Hit
from .types import IMAGE_PATH, MODALITIES, SOURCE, Candidate, Query

if TYPE_CHECKING:  # pragma: no cover
    from .index import MultimodalIndex

logger = logging.getLogger(__name__)

SKIPPED_TEXT_NOTE = (
    "text collection skipped: it uses a separate text embedder ({name}) and the query has no text"
)
#: With ``pages=True``, a collection is searched at most this many times ``top_k`` deep to find
#: ``top_k`` distinct pages.
MAX_PAGE_DEPTH = 16


@dataclass
class RetrievalOptions:
    """What to retrieve: which modalities, how many of each, how to fuse a composed query.

    ``top_k`` applies to each modality unless ``image_top_k`` / ``text_top_k`` say otherwise;
    ``where`` is a Chroma metadata filter passed to every collection searched. ``pages=True``:
    one candidate per page (records sharing a ``page_id``), fused on the ``"rrf"`` scale; the
    top-k then counts pages (see the module docstring).
    """

    modalities: Sequence[str] = MODALITIES
    top_k: int = 5
    image_top_k: int | None = None
    text_top_k: int | None = None
    image_weight: float = 0.5
    where: dict[str, Any] | None = None
    rrf_k: int = 60
    allow_urls: bool = False
    pages: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.modalities, str):
            self.modalities = (self.modalities,)
        self.modalities = tuple(dict.fromkeys(self.modalities))
        unknown = set(self.modalities) - set(MODALITIES)
        if unknown or not self.modalities:
            raise ConfigError(f"modalities must be a non-empty subset of {MODALITIES}, got {list(self.modalities)}")
        for name in ("top_k", "image_top_k", "text_top_k", "rrf_k"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if not 0.0 <= self.image_weight <= 1.0:
            raise ConfigError(f"image_weight must be in [0, 1], got {self.image_weight}")
        if self.where is not None and not isinstance(self.where, dict):
            raise ConfigError(f"where must be a Chroma filter dict, got {type(self.where).__name__}")
        if not isinstance(self.pages, bool):
            raise ConfigError(f"pages must be True or False, got {self.pages!r}")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "RetrievalOptions":
        """Options from keywords; an unknown keyword is a :class:`ConfigError`."""
        no_unknown("retrieval options", kwargs, [f.name for f in fields(cls)])
        return cls(**kwargs)

    @classmethod
    def resolve(cls, options: "RetrievalOptions | None" = None, **kwargs: Any) -> "RetrievalOptions":
        """``options`` or options built from keywords — not both (what every adapter accepts)."""
        if options is None:
            return cls.from_kwargs(**kwargs)
        if kwargs:
            raise ConfigError("give options= or option keywords, not both")
        if not isinstance(options, cls):
            raise ConfigError(f"options must be RetrievalOptions, got {type(options).__name__}")
        return options

    def to_dict(self) -> dict[str, Any]:
        return {"modalities": list(self.modalities), **{f.name: getattr(self, f.name) for f in fields(self) if f.name != "modalities"}}

    def k(self, modality: str) -> int:
        """Top-k for one modality."""
        specific = self.image_top_k if modality == "image" else self.text_top_k
        return specific or self.top_k


class RetrievalResult(list):
    """The candidates, best first (a ``list[Candidate]``), plus ``notes`` on anything skipped."""

    def __init__(self, candidates: Sequence[Candidate] = (), notes: Sequence[str] = ()) -> None:
        super().__init__(candidates)
        self.notes: list[str] = list(notes)

    @property
    def candidates(self) -> list[Candidate]:
        return list(self)


def _has_text(query: Query) -> bool:
    return bool(query.text and query.text.strip())


def _normalise(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def query_vector(index: MultimodalIndex, query: Query, *, image_weight: float = 0.5, allow_urls: bool = False) -> np.ndarray:
    """The query's vector in the image embedder's space (composed queries fused, see module doc)."""
    embedder = index.image_embedder
    parts: list[tuple[float, np.ndarray]] = []
    has_text = _has_text(query)
    if query.image is not None:
        image = load_image(query.image, allow_urls=allow_urls, max_pixels=index.max_pixels)
        weight = image_weight if has_text else 1.0
        parts.append((weight, embedder.embed_images([image], show_progress=False)[0]))
    if has_text:
        weight = 1.0 - image_weight if query.image is not None else 1.0
        parts.append((weight, embedder.embed_texts([query.text], show_progress=False)[0]))
    return _normalise(sum(weight * _normalise(vec) for weight, vec in parts))


def _candidate(hit: Hit, modality: str, rank: int, score: float, scale: str) -> Candidate:
    meta = {**hit.metadata, "cosine": hit.similarity, "rank": rank, "score_scale": scale}
    return Candidate(
        id=hit.id,
        modality=modality,  # type: ignore[arg-type]
        text=hit.document,
        image_path=(hit.metadata.get(IMAGE_PATH) or hit.metadata.get(SOURCE)) if modality == "image" else None,
        score=score,
        metadata=meta,
    )


def _candidate_rrf(hit: Hit, modality: str, rank: int, score: float) -> Candidate:
    return _candidate(hit, modality, rank, score, "rrf")


def _search(store: Any, vector: np.ndarray, k: int, options: RetrievalOptions) -> list[Hit]:
    """The ``k`` nearest records; with ``pages``, searched deeper (up to ``MAX_PAGE_DEPTH · k``)
    until they hold ``k`` distinct pages or the collection runs out."""
    depth = k
    while True:
        hits = store.query(vector, depth, where=options.where)
        if not options.pages or len(hits) < depth or depth >= MAX_PAGE_DEPTH * k or count_groups(hits) >= k:
            return hits
        depth = min(depth * 4, MAX_PAGE_DEPTH * k)


def retrieve(
    index: MultimodalIndex, query: Query | str, options: RetrievalOptions | None = None, **option_kwargs: Any
) -> RetrievalResult:
    """Retrieve candidates for ``query`` (a :class:`Query` or text) from ``index``, best first.

    Options come as a :class:`RetrievalOptions` or as its fields in keywords, not both. Score
    scales: see the module doc.
    """
    if isinstance(query, str):
        query = Query(text=query)
    if not isinstance(query, Query):
        raise ConfigError(f"retrieve takes a Query or a string, got {type(query).__name__}")
    options = RetrievalOptions.resolve(options, **option_kwargs)
    notes: list[str] = []
    shared: np.ndarray | None = None

    def shared_vector() -> np.ndarray:
        nonlocal shared
        if shared is None:
            shared = query_vector(index, query, image_weight=options.image_weight, allow_urls=options.allow_urls)
        return shared

    per_modality: dict[str, list[Hit]] = {}
    for modality in options.modalities:
        if modality == "image":
            store, vector = index.image_store, shared_vector()
        elif index.shared_space:
            store, vector = index.text_store, shared_vector()
        elif not _has_text(query):
            note = SKIPPED_TEXT_NOTE.format(name=index.text_space_embedder.name)
            logger.warning(note)
            notes.append(note)
            continue
        else:
            store = index.text_store
            vector = index.text_space_embedder.embed_texts([query.text], show_progress=False)[0]
        per_modality[modality] = _search(store, vector, options.k(modality), options)

    if options.pages:
        found = page_candidates(index, per_modality, k=options.k, rrf_k=options.rrf_k, plain=_candidate_rrf, notes=notes)
        return RetrievalResult(found, notes)
    candidates: list[Candidate] = []
    use_rrf = not index.shared_space and len(per_modality) > 1
    for modality, hits in per_modality.items():
        for rank, hit in enumerate(hits, start=1):
            if use_rrf:
                candidates.append(_candidate(hit, modality, rank, 1.0 / (options.rrf_k + rank), "rrf"))
            else:
                candidates.append(_candidate(hit, modality, rank, hit.similarity, "cosine"))
    candidates.sort(key=lambda c: -(c.score if c.score is not None else float("-inf")))
    return RetrievalResult(candidates, notes)


__all__ = ["MAX_PAGE_DEPTH", "RetrievalOptions", "RetrievalResult", "SKIPPED_TEXT_NOTE", "query_vector", "retrieve"]
