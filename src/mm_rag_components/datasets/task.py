"""Data sets shared by evaluation and training: queries, a corpus, relevance judgements (qrels),
and a split by item.

Two folder layouts load with :func:`~mm_rag_components.datasets.loading.load_dataset`:

**Captioned images** (the layout of ``shared/data/coco-cc-51``): image files and
``captions.jsonl``, one JSON object per line, ``{"image": "images/x.jpg", "captions": [...]}``
(other keys are ignored; paths are relative to the folder). Three tasks:

* ``text2image`` — each caption is a query; its image is the one relevant item among all images;
* ``image2text`` — each image is a query; its captions are relevant among all captions;
* ``caption2caption`` — each caption is a query; the *other* captions of its image are relevant
  among all captions (the query caption itself is excluded from the candidates).

**Bring your own qrels**: ``queries.jsonl``, ``corpus.jsonl`` and ``qrels.jsonl`` or TREC
``qrels.txt`` (see :mod:`mm_rag_components.datasets.qrels`).

**Pages of PDFs**: PDFs and ``pages.jsonl`` — the ``pages`` task, page-level retrieval (see
:mod:`mm_rag_components.datasets.pages`).

Queries carry the item (``group``) they belong to: :meth:`EvalTask.split` cuts by item, seeded, so
the captions of one image never sit on both sides of the tune / held-out split.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import ConfigError
from ..types import Query
from .files import check_unique

CAPTION_TASKS = ("text2image", "image2text", "caption2caption")
QRELS_TASK = "qrels"
PAGES_TASK = "pages"
TASKS = (*CAPTION_TASKS, QRELS_TASK, PAGES_TASK)


@dataclass(frozen=True)
class EvalQuery:
    """A query (text, an image path, or both), the item it belongs to, and ids it never sees."""

    id: str
    text: str | None = None
    image: str | None = None
    group: str = ""
    exclude: frozenset[str] = frozenset()

    def to_query(self) -> Query:
        return Query(text=self.text, image=self.image)


@dataclass(frozen=True)
class EvalDoc:
    """A corpus entry: a text, an image path, an image with its caption, or page ``page`` of the
    PDF ``document`` (an absolute path; its records are the page's image and text)."""

    id: str
    text: str | None = None
    image: str | None = None
    group: str = ""
    document: str | None = None
    page: int | None = None

    @property
    def modality(self) -> str:
        return "page" if self.document is not None else "image" if self.image is not None else "text"


@dataclass
class EvalTask:
    """Queries, corpus and qrels (``qrels[query_id][doc_id] = relevance``, > 0 is relevant)."""

    name: str
    task: str
    queries: list[EvalQuery]
    corpus: list[EvalDoc]
    qrels: dict[str, dict[str, int]]
    root: Path | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_unique("query", [q.id for q in self.queries])
        check_unique("corpus", [d.id for d in self.corpus])
        if not self.queries:
            raise ConfigError(f"{self.name}: no queries")
        if len(self.corpus) < 2:
            raise ConfigError(f"{self.name}: the corpus needs at least 2 entries, got {len(self.corpus)}")
        docs = {d.id for d in self.corpus}
        for query in self.queries:
            judged = self.qrels.get(query.id, {})
            if not any(r > 0 for r in judged.values()):
                raise ConfigError(f"{self.name}: query {query.id!r} has no relevant corpus entry in the qrels")
            unknown = sorted(set(judged) - docs)
            if unknown:
                raise ConfigError(f"{self.name}: qrels of query {query.id!r} name unknown corpus ids {unknown[:5]}")

    @property
    def modalities(self) -> tuple[str, ...]:
        """Corpus modalities, image first (a page is both)."""
        present = {d.modality for d in self.corpus}
        present |= {"image", "text"} if "page" in present else set()
        return tuple(m for m in ("image", "text") if m in present)

    @property
    def needs_images(self) -> bool:
        """True when a query or a corpus entry is an image (a CLIP-style embedder is needed)."""
        return any(q.image for q in self.queries) or any(d.image for d in self.corpus)

    def split(self, tune_fraction: float = 0.5, seed: int = 0) -> tuple[list[EvalQuery], list[EvalQuery]]:
        """(tune, held-out) queries, split by ``group`` (item), seeded; see :func:`split_groups`."""
        tune_groups, _ = split_groups([q.group for q in self.queries], tune_fraction, seed)
        tune = [q for q in self.queries if q.group in tune_groups]
        return tune, [q for q in self.queries if q.group not in tune_groups]

    def limited(self, max_items: int | None, seed: int = 0) -> EvalTask:
        """The same task with the queries of at most ``max_items`` items (seeded choice)."""
        groups = sorted({q.group for q in self.queries})
        if max_items is None or max_items >= len(groups):
            return self
        if max_items < 1:
            raise ConfigError(f"max_items must be >= 1, got {max_items}")
        chosen = set(random.Random(seed).sample(groups, max_items))
        queries = [q for q in self.queries if q.group in chosen]
        notes = [*self.notes, f"queries limited to {max_items} of {len(groups)} items (seed {seed})"]
        return replace(self, queries=queries, qrels={q.id: self.qrels[q.id] for q in queries}, notes=notes)


def split_groups(groups: Iterable[str], tune_fraction: float, seed: int) -> tuple[set[str], set[str]]:
    """Shuffle the distinct ``groups`` with ``seed``; the first ``round(fraction · n)`` tune.

    ``tune_fraction`` is in [0, 1); when it is > 0 and there are two groups or more, each side
    gets at least one group. Items never straddle the split.
    """
    if isinstance(tune_fraction, bool) or not isinstance(tune_fraction, (int, float)) or not 0 <= tune_fraction < 1:
        raise ConfigError(f"tune_fraction must be a number in [0, 1), got {tune_fraction!r}")
    ordered = sorted(set(groups))
    random.Random(seed).shuffle(ordered)
    n_tune = round(tune_fraction * len(ordered))
    if tune_fraction > 0 and len(ordered) >= 2:
        n_tune = min(max(n_tune, 1), len(ordered) - 1)
    return set(ordered[:n_tune]), set(ordered[n_tune:])


__all__ = ["CAPTION_TASKS", "EvalDoc", "EvalQuery", "EvalTask", "PAGES_TASK", "QRELS_TASK", "TASKS", "split_groups"]
