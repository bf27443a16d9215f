"""Evaluation harness: compare retriever, pointwise, fusion, listwise and filters on one data set.

Heavy modules (ranx, matplotlib, torch, chromadb) load on first use, never at import::

    from mm_rag_components.eval import evaluate, load_dataset

    task = load_dataset("data/coco-cc-51", "caption2caption")
    report = evaluate(task, TextEmbedder(), pointwise=PointwiseRanker.create("model-dir"))
    report.save("eval-out")          # report.json, report.md, report.png
"""

from __future__ import annotations

from .._lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "CAPTION_TASKS": "datasets",
    "TASKS": "datasets",
    "EvalDoc": "datasets",
    "EvalQuery": "datasets",
    "EvalTask": "datasets",
    "captioned_task": "datasets",
    "load_dataset": "datasets",
    "qrels_task": "qrels",
    "split_groups": "datasets",
    "DEFAULT_METRICS": "metrics",
    "KeptContext": "metrics",
    "kept_context": "metrics",
    "latency_stats": "metrics",
    "ranking_metrics": "metrics",
    "ingest_task": "candidates",
    "open_index": "candidates",
    "retrieve_candidates": "candidates",
    "DEFAULT_FUSION_GRID": "tuning",
    "EvalReport": "report",
    "SystemResult": "report",
    "evaluate": "harness",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
