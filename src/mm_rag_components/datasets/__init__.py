"""Data sets shared by evaluation (:mod:`mm_rag_components.eval`) and training
(:mod:`mm_rag_components.training`): tasks (queries, corpus, qrels, a split by item), loading a
folder, and retrieving a task's candidates from an index."""

from __future__ import annotations

from .._lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "CAPTION_TASKS": "task",
    "TASKS": "task",
    "QRELS_TASK": "task",
    "PAGES_TASK": "task",
    "pages_task": "pages",
    "EvalDoc": "task",
    "EvalQuery": "task",
    "EvalTask": "task",
    "split_groups": "task",
    "captioned_task": "loading",
    "load_dataset": "loading",
    "qrels_task": "qrels",
    "read_jsonl": "files",
    "ingest_task": "candidates",
    "open_index": "candidates",
    "retrieve_candidates": "candidates",
    "Retrieved": "candidates",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
