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
    # data sets live in mm_rag_components.datasets (shared with training); exported here too
    "CAPTION_TASKS": ".datasets.task",
    "TASKS": ".datasets.task",
    "EvalDoc": ".datasets.task",
    "EvalQuery": ".datasets.task",
    "EvalTask": ".datasets.task",
    "captioned_task": ".datasets.loading",
    "load_dataset": ".datasets.loading",
    "qrels_task": ".datasets.qrels",
    "split_groups": ".datasets.task",
    "DEFAULT_METRICS": "metrics",
    "KeptContext": "metrics",
    "kept_context": "metrics",
    "latency_stats": "metrics",
    "ranking_metrics": "metrics",
    "ingest_task": ".datasets.candidates",
    "open_index": ".datasets.candidates",
    "retrieve_candidates": ".datasets.candidates",
    "DEFAULT_FUSION_GRID": "tuning",
    "EvalReport": "report",
    "SystemResult": "report",
    "evaluate": "harness",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
