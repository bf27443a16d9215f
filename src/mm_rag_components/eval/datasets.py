"""Evaluation data sets: queries, a corpus, relevance judgements (qrels), and a split by item.

Two folder layouts load with :func:`load_dataset`:

**Captioned images** (the layout of ``shared/data/coco-cc-51``): image files and
``captions.jsonl``, one JSON object per line, ``{"image": "images/x.jpg", "captions": [...]}``
(other keys are ignored; paths are relative to the folder). Three tasks:

* ``text2image`` — each caption is a query; its image is the one relevant item among all images;
* ``image2text`` — each image is a query; its captions are relevant among all captions;
* ``caption2caption`` — each caption is a query; the *other* captions of its image are relevant
  among all captions (the query caption itself is excluded from the candidates).

**Bring your own qrels**: ``queries.jsonl``, ``corpus.jsonl`` and ``qrels.jsonl`` or TREC
``qrels.txt`` (see :mod:`mm_rag_components.eval.qrels`).

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
from .files import check_unique, image_path, read_jsonl

CAPTION_TASKS = ("text2image", "image2text", "caption2caption")
QRELS_TASK = "qrels"
TASKS = (*CAPTION_TASKS, QRELS_TASK)


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
    """A corpus entry: a text, an image path, or an image with its caption."""

    id: str
    text: str | None = None
    image: str | None = None
    group: str = ""

    @property
    def modality(self) -> str:
        return "image" if self.image is not None else "text"


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
        """Corpus modalities, image first."""
        present = {d.modality for d in self.corpus}
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


# ----------------------------------------------------------------------------- loading


def load_dataset(path: str | Path, task: str | None = None) -> EvalTask:
    """An :class:`EvalTask` from a captioned folder (``task`` one of :data:`CAPTION_TASKS`,
    default ``caption2caption``) or a qrels folder (``task`` ``None`` or ``"qrels"``)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"{root}: {'is a file, not a folder' if root.exists() else 'no such folder'}")
    if task is not None and task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if (root / "captions.jsonl").is_file():
        if task == QRELS_TASK:
            raise ConfigError(f"{root} is a captioned folder (captions.jsonl); its tasks are {', '.join(CAPTION_TASKS)}")
        return captioned_task(root, task or "caption2caption")
    if (root / "queries.jsonl").is_file() or (root / "corpus.jsonl").is_file():
        if task not in (None, QRELS_TASK):
            raise ConfigError(f"{root} is a qrels folder (queries.jsonl, corpus.jsonl, qrels); --task {task} needs captions.jsonl")
        from .qrels import qrels_task

        return qrels_task(root)
    raise ConfigError(
        f"{root}: not an evaluation folder; expected captions.jsonl (captioned images) or "
        "queries.jsonl + corpus.jsonl + qrels.jsonl/qrels.txt (your own qrels)"
    )


def captioned_task(folder: str | Path, task: str = "caption2caption") -> EvalTask:
    """One of the three tasks of a captioned folder (see the module docstring)."""
    if task not in CAPTION_TASKS:
        raise ConfigError(f"unknown captioned task {task!r}; choose one of {', '.join(CAPTION_TASKS)}")
    root = Path(folder).expanduser()
    source = root / "captions.jsonl"
    images: dict[str, tuple[str, list[str]]] = {}
    for where, row in read_jsonl(source):
        image, captions = row.get("image"), row.get("captions")
        if not isinstance(image, str) or not image.strip():
            raise ConfigError(f"{where}: 'image' must be a path relative to the folder")
        if not isinstance(captions, list) or not all(isinstance(c, str) and c.strip() for c in captions):
            raise ConfigError(f"{where}: 'captions' must be a list of non-empty strings")
        if image in images:
            raise ConfigError(f"{where}: image {image!r} is listed twice")
        images[image] = (image_path(root, image, where), [" ".join(c.split()) for c in captions])
    if not images:
        raise ConfigError(f"{source}: no images listed")
    captions = {f"{image}#{k}": (image, text) for image, (_, texts) in images.items() for k, text in enumerate(texts)}
    notes: list[str] = []
    if task == "text2image":
        corpus = [EvalDoc(image, image=path, group=image) for image, (path, _) in images.items()]
        queries = [EvalQuery(cid, text=text, group=image) for cid, (image, text) in captions.items()]
        qrels = {cid: {image: 1} for cid, (image, _) in captions.items()}
    else:
        corpus = [EvalDoc(cid, text=text, group=image) for cid, (image, text) in captions.items()]
        by_image: dict[str, list[str]] = {}
        for cid, (image, _) in captions.items():
            by_image.setdefault(image, []).append(cid)
        if task == "image2text":
            queries = [EvalQuery(image, image=path, group=image) for image, (path, _) in images.items() if by_image.get(image)]
            qrels = {q.id: {cid: 1 for cid in by_image[q.id]} for q in queries}
        else:
            queries = [
                EvalQuery(cid, text=text, group=image, exclude=frozenset({cid}))
                for cid, (image, text) in captions.items() if len(by_image[image]) >= 2
            ]
            qrels = {q.id: {c: 1 for c in by_image[q.group] if c != q.id} for q in queries}
        lonely = sum(1 for image in images if len(by_image.get(image, [])) < (1 if task == "image2text" else 2))
        if lonely:
            notes.append(f"{lonely} image(s) with too few captions serve only as distractors")
    if not queries:
        raise ConfigError(f"{source}: no queries for task {task} (every image needs captions)")
    return EvalTask(root.name, task, queries, corpus, qrels, root=root, notes=notes)


__all__ = [
    "CAPTION_TASKS", "EvalDoc", "EvalQuery", "EvalTask", "QRELS_TASK", "TASKS",
    "captioned_task", "load_dataset", "split_groups",
]
