"""One candidate per page: the records that share a page id (a document page's image and its
text chunks, or your own records carrying ``page_id``) come back as one candidate.

**Fusion scale** (``score_scale="rrf"``): each searched collection's hits are collapsed into
groups — a page, or a record without a page id — ranked ``1, 2, …`` in the order of their best
hit; a group's score is the sum, over the lists it appears in, of ``1 / (rrf_k + rank)``. Ranks,
not cosines, because a page meets a query twice — through its image (a text→image cosine) and
through its text (a text→text cosine, from the same CLIP space or from another embedder) — and the
two similarities do not share a distribution: CLIP's text–text cosines sit far above its
text–image ones, so the maximum or the sum of cosines would let the text side decide alone. Ranks
are comparable between lists, and a page found both ways outranks one found once at the same rank.

**What a page candidate holds**: every record of its page, read back from both collections by
page id (not only the hits): the page image (``image_path`` as an image hit has it) and the page
text (its chunks in ``chunk`` order; the overlap a splitter repeats between neighbouring chunks is
removed). ``modality`` is ``"image+text"`` with both, else ``"image"`` or ``"text"``; ``id`` is the
page id. Metadata: the page's record metadata (``title``, ``page``, ``page_count``, ``page_id``,
``source``, ``file_name`` …), ``cosine`` (its best hit's), ``rank`` (its best rank),
``image_rank`` / ``text_rank`` (absent when not among those hits), ``score_scale="rrf"`` and, with an image,
``sha256`` (the page image's, which the web chat checks before serving the file).
Records without a page id stay plain candidates, on the same scale.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .store import Hit
from .types import CHUNK, COSINE, IMAGE_RANK, MIXED, MODALITY, PAGE_ID, RANK, SCORE_SCALE, SHA256, TEXT_RANK, Candidate

if TYPE_CHECKING:  # pragma: no cover
    from .index import MultimodalIndex

logger = logging.getLogger(__name__)

#: Shortest repeated run between two chunks that counts as the splitter's overlap (shorter
#: coincidences are kept: dropping them could lose text).
MIN_OVERLAP_CHARS = 12
#: Per-record keys a page candidate does not carry over (they describe one record, not the page).
_RECORD_ONLY = (CHUNK, SHA256, COSINE, RANK, SCORE_SCALE, MODALITY)


def page_of(metadata: dict[str, Any]) -> str | int | None:
    """A record's page id: a non-empty string or an integer, else ``None`` (a plain record)."""
    value = metadata.get(PAGE_ID)
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


@dataclass
class Group:
    """A page or a plain record, with its best hit and rank in each list it appears in."""

    page_id: str | int | None
    hits: dict[str, Hit] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)

    def score(self, rrf_k: int) -> float:
        return sum(1.0 / (rrf_k + rank) for rank in self.ranks.values())


def group_hits(per_modality: dict[str, list[Hit]], k: Callable[[str], int]) -> list[Group]:
    """Collapse each list of hits into groups ranked by their best hit (at most ``k(modality)``
    groups per list), in first-seen order."""
    groups: dict[tuple[Any, ...], Group] = {}
    for modality, hits in per_modality.items():
        rank = 0
        for hit in hits:
            page = page_of(hit.metadata)
            key = ("page", type(page).__name__, page) if page is not None else ("record", modality, hit.id)
            group = groups.get(key)
            if group is not None and modality in group.ranks:
                continue  # another chunk of a page already ranked in this list
            if rank == k(modality):
                break
            rank += 1
            group = groups.setdefault(key, Group(page))
            group.hits[modality], group.ranks[modality] = hit, rank
    return list(groups.values())


def count_groups(hits: Sequence[Hit]) -> int:
    """How many distinct groups (pages or plain records) ``hits`` hold."""
    return len({("page", type(p).__name__, p) if (p := page_of(h.metadata)) is not None else ("record", h.id) for h in hits})


def page_records(index: MultimodalIndex, pages: Sequence[str | int]) -> dict[str, list[Hit]]:
    """Every image and text record of ``pages``, by modality (one ``$in`` read per collection and id type)."""
    out: dict[str, list[Hit]] = {"image": [], "text": []}
    by_type: dict[type, list[Any]] = {}
    for page in dict.fromkeys(pages):
        by_type.setdefault(type(page), []).append(page)
    for modality, store in (("image", index.image_store), ("text", index.text_store)):
        for values in by_type.values():
            out[modality].extend(store.get(where={PAGE_ID: {"$in": values}}))
    return out


def join_chunks(chunks: Sequence[str]) -> str:
    """Chunks of one text joined in order, the overlap repeated between neighbours removed."""
    out = ""
    for chunk in chunks:
        if not chunk:
            continue
        if not out:
            out = chunk
            continue
        n = _overlap(out, chunk)
        out += chunk[n:] if n >= MIN_OVERLAP_CHARS else " " + chunk
    return out


def _overlap(left: str, right: str) -> int:
    """Length of the longest suffix of ``left`` that is a prefix of ``right`` (linear time)."""
    tail = left[-len(right) :]
    s = right + "\0" + tail
    pi = [0] * len(s)
    for i in range(1, len(s)):
        j = pi[i - 1]
        while j and s[i] != s[j]:
            j = pi[j - 1]
        if s[i] == s[j]:
            j += 1
        pi[i] = j
    return pi[-1]


def _chunk_order(hit: Hit) -> tuple[int, str]:
    chunk = hit.metadata.get(CHUNK)
    return (chunk if isinstance(chunk, int) and not isinstance(chunk, bool) else 0, hit.id)


def page_candidate(
    group: Group, images: list[Hit], texts: list[Hit], rrf_k: int, image_candidate: Callable[[Hit], Candidate], notes: list[str]
) -> Candidate:
    """The candidate of one page from all of its records (see the module docstring)."""
    texts = sorted(texts, key=_chunk_order)
    if len(images) > 1:
        best = group.hits.get("image")
        images = sorted(images, key=lambda h: (best is None or h.id != best.id, h.id))
        note = f"page {group.page_id!r} has {len(images)} image records; {images[0].id!r} is shown"
        logger.warning(note)
        notes.append(note)
    image = image_candidate(images[0]) if images else None
    text = join_chunks([h.document or "" for h in texts]) or None
    base = images[0] if images else (texts[0] if texts else next(iter(group.hits.values())))
    meta = {k: v for k, v in base.metadata.items() if k not in _RECORD_ONLY}
    if images and isinstance(images[0].metadata.get(SHA256), str):
        meta[SHA256] = images[0].metadata[SHA256]  # the page image's: what /media checks before serving it
    cosines = [h.similarity for h in group.hits.values()]
    meta.update({COSINE: max(cosines), RANK: min(group.ranks.values()), SCORE_SCALE: "rrf"})
    for modality, key in (("image", IMAGE_RANK), ("text", TEXT_RANK)):
        if modality in group.ranks:
            meta[key] = group.ranks[modality]
    modality = MIXED if image is not None and text is not None else ("image" if image is not None else "text")
    meta[MODALITY] = modality
    return Candidate(
        id=str(group.page_id),
        modality=modality,  # type: ignore[arg-type]
        text=text,
        image_path=image.image_path if image is not None else None,
        image=image.image if image is not None else None,
        score=group.score(rrf_k),
        metadata=meta,
    )


def page_candidates(
    index: MultimodalIndex,
    per_modality: dict[str, list[Hit]],
    *,
    k: Callable[[str], int],
    rrf_k: int,
    plain: Callable[[Hit, str, int, float], Candidate],
    notes: list[str],
) -> list[Candidate]:
    """One candidate per page (plain records stay plain, built by ``plain(hit, modality, rank,
    score)``), best first; ties keep first-seen order."""
    groups = group_hits(per_modality, k)
    records = page_records(index, [g.page_id for g in groups if g.page_id is not None])
    by_page: dict[tuple[str, Any], dict[str, list[Hit]]] = {}
    for modality, hits in records.items():
        for hit in hits:
            page = page_of(hit.metadata)
            if page is not None:
                by_page.setdefault((type(page).__name__, page), {"image": [], "text": []})[modality].append(hit)
    image_part = lambda hit: plain(hit, "image", 0, 0.0)  # noqa: E731 - a page's image, as an image hit has it
    out = []
    for group in groups:
        if group.page_id is None:
            (modality, hit), = group.hits.items()
            out.append(plain(hit, modality, group.ranks[modality], group.score(rrf_k)))
            continue
        found = by_page.get((type(group.page_id).__name__, group.page_id), {"image": [], "text": []})
        for modality, hit in group.hits.items():  # a hit deleted between the search and the read still counts
            if all(h.id != hit.id for h in found[modality]):
                found[modality].append(hit)
        out.append(page_candidate(group, found["image"], found["text"], rrf_k, image_part, notes))
    order = sorted(range(len(out)), key=lambda i: (-(out[i].score or 0.0), i))
    return [out[i] for i in order]


__all__ = ["MIN_OVERLAP_CHARS", "count_groups", "group_hits", "join_chunks", "page_candidates", "page_of"]
