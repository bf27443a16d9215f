"""Page retrieval over PDFs: the ``pages`` task.

A folder of PDFs and ``pages.jsonl``, one JSON object per page of the corpus:
``{"pdf": "report.pdf", "page": 3, "queries": ["...", ...]}`` (``pdf`` relative to the folder,
``page`` 1-based; other keys are ignored). The corpus is the listed pages, each with the id
``<pdf>#p<page>``; every query's one relevant item is its page (a page may have no queries: a
distractor). :func:`~mm_rag_components.datasets.candidates.ingest_task` ingests the PDFs, and
retrieved records map back to their page through their ``source`` and ``page`` metadata, so a
page found by its image or by any of its text chunks counts once, at its best rank.
(:func:`mm_rag_components.testing.write_page_collection` writes such a folder.)
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, MediaError
from .files import read_jsonl
from .task import PAGES_TASK, EvalDoc, EvalQuery, EvalTask

PAGES_FILE = "pages.jsonl"


def page_id(pdf: str, page: int) -> str:
    """The corpus id of page ``page`` of ``pdf`` (as written in ``pages.jsonl``)."""
    return f"{pdf}#p{page}"


def pages_task(folder: str | Path) -> EvalTask:
    """The ``pages`` task of ``folder`` (see the module docstring)."""
    root = Path(folder).expanduser()
    source = root / PAGES_FILE
    if not source.is_file():
        raise ConfigError(f"{root}: missing {PAGES_FILE} (a pages folder holds PDFs and {PAGES_FILE})")
    corpus: list[EvalDoc] = []
    queries: list[EvalQuery] = []
    qrels: dict[str, dict[str, int]] = {}
    seen: set[str] = set()
    for where, row in read_jsonl(source):
        pdf, page, texts = row.get("pdf"), row.get("page"), row.get("queries", [])
        if not isinstance(pdf, str) or not pdf.strip():
            raise ConfigError(f"{where}: 'pdf' must be a path relative to the folder")
        if isinstance(page, bool) or not isinstance(page, int) or page < 1:
            raise ConfigError(f"{where}: 'page' must be an integer >= 1, got {page!r}")
        if not isinstance(texts, list) or not all(isinstance(t, str) and t.strip() for t in texts):
            raise ConfigError(f"{where}: 'queries' must be a list of non-empty strings")
        path = root / pdf
        if not path.is_file():
            raise MediaError(f"{where}: PDF {pdf!r} not found in {root}")
        doc_id = page_id(pdf, page)
        if doc_id in seen:
            raise ConfigError(f"{where}: page {page} of {pdf!r} is listed twice")
        seen.add(doc_id)
        corpus.append(EvalDoc(doc_id, group=doc_id, document=str(path.resolve()), page=page))
        for k, text in enumerate(texts):
            query = EvalQuery(f"{doc_id}#q{k}", text=" ".join(text.split()), group=doc_id)
            queries.append(query)
            qrels[query.id] = {doc_id: 1}
    if not queries:
        raise ConfigError(f"{source}: no queries (give some pages a 'queries' list)")
    return EvalTask(root.name, PAGES_TASK, queries, corpus, qrels, root=root)


__all__ = ["PAGES_FILE", "page_id", "pages_task"]
