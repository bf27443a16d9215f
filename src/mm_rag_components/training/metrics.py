"""Pair metrics on held-out scores: log-loss, accuracy, ROC AUC, calibration error."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..calibration import expected_calibration_error, sigmoid


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """Probability that a random relevant pair outscores a random irrelevant one (ties ½)."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    pos, neg = s[y == 1], s[y == 0]
    if not len(pos) or not len(neg):
        return None
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def pair_metrics(logodds: Sequence[float], labels: Sequence[int]) -> dict[str, Any]:
    """Raw scores p = sigmoid(z_yes − z_no): log-loss, accuracy at p = ½, AUC, mean p per label."""
    if not logodds:
        return {"pairs": 0}
    z, y = np.asarray(logodds, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    p = sigmoid(z)
    out: dict[str, Any] = {
        "pairs": int(z.size),
        "log_loss": round(_log_loss(p, y), 4),
        "accuracy": round(float(np.mean((p >= 0.5) == (y == 1))), 4),
        "auc": None,
        "mean_p_relevant": round(float(p[y == 1].mean()), 4) if (y == 1).any() else None,
        "mean_p_irrelevant": round(float(p[y == 0].mean()), 4) if (y == 0).any() else None,
        "ece": round(expected_calibration_error(p, y.astype(int)), 4),
    }
    auc = roc_auc(z, y)
    out["auc"] = None if auc is None else round(auc, 4)
    return out


def calibrated_metrics(calibration: Any, logodds: Sequence[float], labels: Sequence[int]) -> dict[str, Any]:
    """Log-loss and ECE of the calibrated probabilities (on the pairs the calibration was fitted on)."""
    p, y = np.asarray(calibration.apply(logodds)), np.asarray(labels, dtype=np.float64)
    return {"log_loss": round(_log_loss(p, y), 4), "ece": round(expected_calibration_error(p, y.astype(int)), 4)}


__all__ = ["calibrated_metrics", "pair_metrics", "roc_auc"]
