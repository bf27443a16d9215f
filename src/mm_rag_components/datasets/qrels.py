"""Bring your own qrels: ``queries.jsonl``, ``corpus.jsonl`` and ``qrels.jsonl`` or TREC qrels.

* ``queries.jsonl``: ``{"id", "text"?, "image"?, "group"?, "exclude"?}`` — ``group`` names the item
  a query belongs to (default: its id; the split never cuts an item), ``exclude`` lists corpus ids
  that are never candidates for it (e.g. itself, when the queries are also in the corpus);
* ``corpus.jsonl``: ``{"id", "text"?, "image"?}`` — a row with both is an image with its caption;
* ``qrels.jsonl``: ``{"query_id", "doc_id", "relevance"?}`` (integer >= 0, default 1; 0 = judged
  not relevant), or ``qrels.txt`` / ``qrels.tsv``: TREC lines ``QID 0 DOCID REL``, or
  ``QID DOCID REL`` with an optional header line (BEIR).

Ids are strings or integers; image paths are relative to the folder. Queries without a relevant
entry are left out (noted).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .task import QRELS_TASK, EvalDoc, EvalQuery, EvalTask
from .files import check_unique, image_path, read_id, read_jsonl

QRELS_FILES = ("qrels.jsonl", "qrels.txt", "qrels.tsv")


def qrels_task(folder: str | Path) -> EvalTask:
    """A task from ``queries.jsonl``, ``corpus.jsonl`` and a qrels file (module docstring)."""
    root = Path(folder).expanduser()
    for name in ("queries.jsonl", "corpus.jsonl"):
        if not (root / name).is_file():
            raise ConfigError(f"{root}: missing {name} (a qrels folder holds queries.jsonl, corpus.jsonl and qrels.jsonl/qrels.txt)")
    queries = [_query(root, where, row) for where, row in read_jsonl(root / "queries.jsonl")]
    corpus = [EvalDoc(read_id(row, "id", where), *_content(root, where, row)) for where, row in read_jsonl(root / "corpus.jsonl")]
    check_unique("query", [q.id for q in queries])
    check_unique("corpus", [d.id for d in corpus])
    qrels = _read_qrels(root, {q.id for q in queries}, {d.id for d in corpus})
    kept = [q for q in queries if any(r > 0 for r in qrels.get(q.id, {}).values())]
    notes = [f"{len(queries) - len(kept)} query(ies) without a relevant corpus entry left out"] if len(kept) < len(queries) else []
    if not kept:
        raise ConfigError(f"{root}: no query has a relevant corpus entry in the qrels")
    return EvalTask(root.name, QRELS_TASK, kept, corpus, {q.id: qrels[q.id] for q in kept}, root=root, notes=notes)


def _content(root: Path, where: str, row: dict[str, Any]) -> tuple[str | None, str | None]:
    text, image = row.get("text"), row.get("image")
    if text is not None and (not isinstance(text, str) or not text.strip()):
        raise ConfigError(f"{where}: 'text' must be a non-empty string")
    if image is not None and (not isinstance(image, str) or not image.strip()):
        raise ConfigError(f"{where}: 'image' must be a path relative to the folder")
    if text is None and image is None:
        raise ConfigError(f"{where}: needs 'text', 'image' or both")
    return text, image_path(root, image, where) if image is not None else None


def _query(root: Path, where: str, row: dict[str, Any]) -> EvalQuery:
    query_id = read_id(row, "id", where)
    text, image = _content(root, where, row)
    group = read_id(row, "group", where) if row.get("group") is not None else query_id
    exclude = row.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(e, (str, int)) and not isinstance(e, bool) for e in exclude):
        raise ConfigError(f"{where}: 'exclude' must be a list of corpus ids")
    return EvalQuery(query_id, text, image, group, frozenset(str(e) for e in exclude))


def _read_qrels(root: Path, queries: set[str], docs: set[str]) -> dict[str, dict[str, int]]:
    found = [root / name for name in QRELS_FILES if (root / name).is_file()]
    if len(found) != 1:
        names = ", ".join(QRELS_FILES)
        raise ConfigError(f"{root}: {'no qrels file' if not found else 'more than one qrels file'} (give exactly one of {names})")
    path = found[0]
    rows = _jsonl_qrels(path) if path.suffix == ".jsonl" else _trec_qrels(path)
    qrels: dict[str, dict[str, int]] = {}
    for where, query_id, doc_id, relevance in rows:
        if query_id not in queries:
            raise ConfigError(f"{where}: unknown query id {query_id!r}")
        if doc_id not in docs:
            raise ConfigError(f"{where}: unknown corpus id {doc_id!r}")
        if doc_id in qrels.setdefault(query_id, {}):
            raise ConfigError(f"{where}: pair ({query_id!r}, {doc_id!r}) is judged twice")
        qrels[query_id][doc_id] = relevance
    return qrels


def _relevance(value: Any, where: str) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}: relevance must be an integer >= 0, got {value!r}")
    return value


def _jsonl_qrels(path: Path) -> Iterator[tuple[str, str, str, int]]:
    for where, row in read_jsonl(path):
        yield where, read_id(row, "query_id", where), read_id(row, "doc_id", where), _relevance(row.get("relevance", 1), where)


def _trec_qrels(path: Path) -> Iterator[tuple[str, str, str, int]]:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        where = f"{path}:{number}"
        if not parts or parts[0].startswith("#") or (number == 1 and parts[-1].lower() in {"score", "relevance", "rel"}):
            continue
        if len(parts) == 4:
            yield where, parts[0], parts[2], _relevance(parts[3], where)
        elif len(parts) == 3:
            yield where, parts[0], parts[1], _relevance(parts[2], where)
        else:
            raise ConfigError(f"{where}: expected 'QID 0 DOCID REL' or 'QID DOCID REL', got {len(parts)} fields")


__all__ = ["QRELS_FILES", "qrels_task"]
