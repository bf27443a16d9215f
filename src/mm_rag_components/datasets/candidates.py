"""The shared first stage: a Chroma index of the task's corpus and the top-N candidates per query.

Every system of a run reranks or filters these same candidates. Records carry their corpus id in
``metadata["eval_doc_id"]``; candidates come back with ``id`` set to that corpus id. An index
built elsewhere works too: image records are matched by file path, text records by exact text,
records of PDF pages by their document and page number: a pages task retrieves with
``pages=True``, one mixed candidate per page (its image and its text), ranked by rank fusion.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..types import PAGE, SOURCE, Candidate, Item
from .task import EvalQuery, EvalTask

if TYPE_CHECKING:  # pragma: no cover
    from ..index import IngestReport, MultimodalIndex

logger = logging.getLogger(__name__)

DOC_ID = "eval_doc_id"


class _NoImageEmbedder:
    """Stands in as ``image_embedder`` of an index whose corpus is text only and whose embedder
    embeds text only (``MultimodalIndex`` wants an image embedder); never asked to embed."""

    modalities = frozenset({"image"})
    dimension = 1

    def __init__(self, partner: str) -> None:
        self.name = f"no-images ({partner})"

    def embed_texts(self, texts: Sequence[str], **_: Any) -> Any:
        raise ConfigError("this evaluation index holds texts only")

    embed_images = embed_texts


def open_index(
    task: EvalTask, embedder: Any, path: str | Path | None = None, *, client: Any = None,
    text_embedder: Any = None, batch_size: int = 32, page_dir: str | Path | None = None,
) -> MultimodalIndex:
    """A :class:`MultimodalIndex` for ``task`` in the Chroma directory ``path`` or on a chromadb
    ``client``, in a collection named after the embedders and the corpus (nothing ingested yet;
    see :func:`ingest_task`).

    ``embedder`` embeds images and texts in one space (CLIP-style), or texts only when the task
    has no image; ``text_embedder`` optionally embeds the texts in their own space. PDF pages are
    read as text only when ``embedder`` embeds text only; their images go to ``page_dir``.
    """
    from ..index import MultimodalIndex

    modalities = getattr(embedder, "modalities", None)
    if not callable(getattr(embedder, "embed_texts", None)) or not modalities:
        raise ConfigError(f"embedder must be an Embedder (embed_texts, modalities), got {type(embedder).__name__}")
    if "image" in modalities:
        image_embedder, text_side = embedder, text_embedder
    elif task.needs_images:
        raise ConfigError(f"task {task.task} has images; {embedder.name!r} embeds text only (use a CLIP-style embedder)")
    else:
        image_embedder, text_side = _NoImageEmbedder(embedder.name), text_embedder or embedder
    names = [image_embedder.name, getattr(text_side, "name", "")]
    digest = hashlib.sha256(json_key(names, task).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return MultimodalIndex(
        None if client is not None else path, client=client, image_embedder=image_embedder, text_embedder=text_side,
        collection=f"eval-{digest}", batch_size=batch_size, page_dir=page_dir,
        page_images=not isinstance(image_embedder, _NoImageEmbedder),
    )


def json_key(names: list[str], task: EvalTask) -> str:
    """A stable description of the embedders and the corpus (names the collection)."""
    import json

    return json.dumps([names, [(d.id, d.text, d.image, d.document, d.page) for d in task.corpus]], sort_keys=True)


def ingest_task(index: MultimodalIndex, task: EvalTask) -> IngestReport:
    """Ingest the corpus of ``task`` into ``index`` (idempotent: unchanged records are kept); the
    PDFs of page entries are ingested whole."""
    items = [
        Item(text=d.text, image=d.image, source=None if d.image else f"eval:{d.id}", metadata={DOC_ID: d.id})
        for d in task.corpus if d.document is None
    ]
    report = index.ingest(items, show_progress=False)
    documents = sorted({d.document for d in task.corpus if d.document is not None})
    if documents:
        report.add(index.ingest_paths(documents, show_progress=False))
    if report.skipped:
        logger.warning("eval ingest: %d corpus entries skipped", len(report.skipped))
    return report


@dataclass
class Retrieved:
    """One query's candidates (``id`` = corpus id, best first) and the retrieval time."""

    candidates: list[Candidate]
    seconds: float


class _Mapper:
    """Corpus id of a retrieved candidate: its metadata, else its image path, else its text."""

    def __init__(self, task: EvalTask) -> None:
        self.by_path = {str(Path(d.image).resolve()): d.id for d in task.corpus if d.image}
        self.by_page = {(str(Path(d.document).resolve()), d.page): d.id for d in task.corpus if d.document}
        texts: dict[str, list[str]] = {}
        for d in task.corpus:
            if d.text and not d.image:
                texts.setdefault(d.text, []).append(d.id)
        self.by_text = {text: ids[0] for text, ids in texts.items() if len(ids) == 1}
        self.unmatched = 0

    def __call__(self, candidate: Candidate) -> str | None:
        doc_id = candidate.metadata.get(DOC_ID)
        page, source = candidate.metadata.get(PAGE), candidate.metadata.get(SOURCE)
        if doc_id is None and page is not None and source:
            doc_id = self.by_page.get((str(Path(str(source)).resolve()), page))
        elif doc_id is None and candidate.modality == "image":
            source = candidate.metadata.get(SOURCE) or candidate.image_path
            doc_id = self.by_path.get(str(Path(source).resolve())) if source else None
        elif doc_id is None:
            doc_id = self.by_text.get(candidate.text or "")
        if doc_id is None:
            self.unmatched += 1
        return None if doc_id is None else str(doc_id)


def retrieve_candidates(
    index: MultimodalIndex, task: EvalTask, queries: Iterable[EvalQuery], depth: int, *, progress: bool = False
) -> tuple[dict[str, Retrieved], list[str]]:
    """The top ``depth`` corpus entries per query (a query's ``exclude`` ids left out), and notes."""
    from ..retrieval import RetrievalOptions, retrieve

    queries = list(queries)
    mapper = _Mapper(task)
    out: dict[str, Retrieved] = {}
    text_only = isinstance(index.image_embedder, _NoImageEmbedder)
    modalities = tuple(m for m in task.modalities if not (text_only and m == "image"))
    # a document page has several records (its image, its chunks): retrieve pages, each one mixed
    # candidate holding the page image and its whole text, so a reranker judges the page
    pages = any(d.document for d in task.corpus)
    for query in _progress(queries, progress, "retrieving"):
        options = RetrievalOptions(modalities=modalities, top_k=depth + len(query.exclude), pages=pages)
        start = time.perf_counter()
        hits = retrieve(index, query.to_query(), options)
        seconds = time.perf_counter() - start
        chosen: list[Candidate] = []
        seen: set[str] = set(query.exclude)
        for hit in hits:
            doc_id = mapper(hit)
            if doc_id is not None and doc_id not in seen:
                seen.add(doc_id)
                chosen.append(replace(hit, id=doc_id))
        out[query.id] = Retrieved(chosen[:depth], seconds)
    notes = []
    if mapper.unmatched:
        notes.append(f"{mapper.unmatched} retrieved record(s) are not in the task's corpus and were left out")
    if queries and not any(r.candidates for r in out.values()):
        raise ConfigError("no retrieved record belongs to the task's corpus; build the index with ingest_task(index, task)")
    return out, notes


def _progress(items: list[Any], enabled: bool, what: str) -> Iterable[Any]:
    if not enabled:
        return items
    from ..progress import progress_bar  # shown as mm_rag_components.progress's switch says

    return progress_bar(iterable=items, desc=what, unit="query")


__all__ = ["DOC_ID", "Retrieved", "ingest_task", "open_index", "retrieve_candidates"]
