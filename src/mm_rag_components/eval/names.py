"""Names shared by the report and its plot: the two halves of a split, and short metric labels."""

from __future__ import annotations

HELD_OUT = "held_out"
TUNE = "tune"


def metric_label(metric: str) -> str:
    """``ndcg@10`` → ``nDCG@10``, ``recall@5`` → ``R@5`` (what tables and plots show)."""
    name, _, k = metric.partition("@")
    short = {"recall": "R", "precision": "P", "mrr": "MRR", "ndcg": "nDCG", "hit_rate": "Hit", "map": "MAP"}.get(name, name)
    return f"{short}@{k}" if k else short


__all__ = ["HELD_OUT", "TUNE", "metric_label"]
