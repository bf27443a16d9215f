"""Calibrate relevance scores into probabilities, so one threshold means the same for every query.

* :func:`fit_calibration` fits Platt scaling (``p = sigmoid(a·z + b)``) or temperature scaling
  (``p = sigmoid(z / T)``) on log-odds ``z`` (or probabilities, with ``kind="probability"``)
  and binary labels, by Newton's method on the log-loss with Platt's smoothed targets.
* :class:`Calibration` holds the parameters, applies them (``apply`` → probabilities) and is
  saved/loaded as JSON.
* :func:`expected_calibration_error` measures the gap between confidence and accuracy.
* :func:`content_free_logodds` / :func:`prior_corrected_logodds` implement an optional prior
  correction: subtract the log-odds a content-free query (``"N/A"``) gets for each candidate, so
  candidates a model likes whatever the query (a bias of the model, not relevance) lose that edge.
  They use any object with ``score(query, candidates) -> [PointScore-like with .logodds]``.

Only numpy is needed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, Sequence

import numpy as np

from .errors import ConfigError, one_line
from .types import Candidate, Query
from .validate import integer, no_unknown, number, one_of, positive_int

Method = Literal["platt", "temperature", "identity"]
InputKind = Literal["logodds", "probability"]
METHODS: tuple[str, ...] = ("platt", "temperature", "identity")
FORMAT_VERSION = 1
#: Bounds on saved parameters (beyond them a calibration is a bug, not a fit) and on the file.
MAX_PARAMETER = 1e6
MAX_FILE_BYTES = 64 * 1024
_EPS = 1e-7
#: Queries that say nothing, used to estimate a candidate's prior log-odds.
DEFAULT_CONTENT_FREE_QUERIES: tuple[str, ...] = ("N/A",)


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    """Stable logistic function (``-inf → 0``, ``inf → 1``)."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def logit(p: np.ndarray | Sequence[float]) -> np.ndarray:
    """Log-odds of probabilities, clipped away from 0 and 1."""
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class Calibration:
    """Calibration parameters. ``apply(z)`` = ``sigmoid(a·z + b)`` (Platt), ``sigmoid(z / T)``
    (temperature) or ``sigmoid(z)`` (identity). ``input_kind="probability"`` means the inputs
    are probabilities, turned into log-odds first.
    """

    method: Method = "identity"
    a: float = 1.0
    b: float = 0.0
    temperature: float = 1.0
    input_kind: InputKind = "logodds"
    n_samples: int = 0

    def __post_init__(self) -> None:
        one_of("method", self.method, METHODS)
        one_of("input_kind", self.input_kind, ("logodds", "probability"))
        for name in ("a", "b"):
            object.__setattr__(self, name, number(name, getattr(self, name), minimum=-MAX_PARAMETER, maximum=MAX_PARAMETER))
        temperature = number("temperature", self.temperature, minimum=1.0 / MAX_PARAMETER, maximum=MAX_PARAMETER)
        object.__setattr__(self, "temperature", temperature)
        integer("n_samples", self.n_samples, minimum=0)

    def logodds(self, scores: np.ndarray | Sequence[float] | float) -> np.ndarray:
        """Calibrated log-odds of raw ``scores`` (``-inf`` stays ``-inf`` for a > 0)."""
        z = np.asarray(scores, dtype=np.float64)
        if self.input_kind == "probability":
            z = logit(z)
        if self.method == "platt":
            with np.errstate(invalid="ignore"):
                # an unscorable candidate (-inf) stays unscorable even when a < 0
                return np.where(np.isneginf(z), -np.inf, self.a * z + self.b)
        if self.method == "temperature":
            return z / self.temperature
        return z

    def apply(self, scores: np.ndarray | Sequence[float] | float) -> np.ndarray:
        """Calibrated probabilities of raw ``scores`` (same shape)."""
        return sigmoid(self.logodds(scores))

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Calibration":
        """Parameters from :meth:`to_dict`'s output; anything else is a :class:`ConfigError`."""
        if not isinstance(data, dict):
            raise ConfigError("calibration data must be a JSON object")
        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION or isinstance(version, bool):
            raise ConfigError(f"unsupported calibration format_version {version!r}")
        known = ("method", "a", "b", "temperature", "input_kind", "n_samples")
        no_unknown("calibration data", {k: v for k, v in data.items() if k != "format_version"}, known)
        return cls(**{k: data[k] for k in known if k in data})

    def save(self, path: str | Path) -> Path:
        """Write the parameters as JSON; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        """Read parameters written by :meth:`save` (``ConfigError`` if missing or malformed)."""
        try:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: no such calibration file") from exc
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read the calibration file: {exc}") from exc
        if len(raw) > MAX_FILE_BYTES:
            raise ConfigError(f"{path}: over {MAX_FILE_BYTES:,} bytes; not a calibration file")
        try:
            data = json.loads(raw.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ConfigError(f"{path}: not a calibration JSON file: {one_line(exc)}") from exc
        return cls.from_dict(data)


def fit_calibration(
    scores_or_logodds: Sequence[float] | np.ndarray,
    labels: Sequence[int | bool] | np.ndarray,
    method: Method = "platt",
    *,
    kind: InputKind = "logodds",
    max_iter: int = 100,
) -> Calibration:
    """Fit calibration parameters on raw scores and binary relevance labels.

    ``kind="probability"`` when the scores are probabilities (they are fitted on their
    log-odds). Labels are smoothed as in Platt (1999), so perfectly separable data still gives
    finite parameters. Raises :class:`ConfigError` for mismatched lengths, non-finite scores,
    non-binary labels or a single class.
    """
    one_of("method", method, METHODS)
    one_of("kind", kind, ("logodds", "probability"))
    positive_int("max_iter", max_iter)
    z = _floats(scores_or_logodds, "scores")
    y = _labels(labels)
    if z.shape != y.shape:
        raise ConfigError(f"{z.size} scores but {y.size} labels")
    if z.size < 2:
        raise ConfigError("calibration needs at least two scored examples")
    if not np.all(np.isfinite(z)):
        raise ConfigError("scores must be finite (drop flagged candidates with -inf log-odds before fitting)")
    if kind == "probability":
        if np.any((z < 0) | (z > 1)):
            raise ConfigError("kind='probability' but some scores are outside [0, 1]")
        z = logit(z)
    positives = int(y.sum())
    if positives == 0 or positives == y.size:
        raise ConfigError("labels contain a single class; calibration needs relevant and irrelevant examples")
    if method == "identity":
        return Calibration("identity", input_kind=kind, n_samples=int(z.size))
    negatives = y.size - positives
    target = np.where(y == 1, (positives + 1.0) / (positives + 2.0), 1.0 / (negatives + 2.0))
    if method == "platt":
        a, b = _newton(np.column_stack([z, np.ones_like(z)]), target, np.array([1.0, 0.0]), max_iter)
        return Calibration("platt", a=float(a), b=float(b), input_kind=kind, n_samples=int(z.size))
    (inverse_t,) = _newton(z[:, None], target, np.array([1.0]), max_iter)
    if not inverse_t > 0:
        raise ConfigError(
            "temperature scaling needs scores that rise with relevance (the fitted 1/T is not positive); "
            "use method='platt'"
        )
    return Calibration("temperature", temperature=float(1.0 / inverse_t), input_kind=kind, n_samples=int(z.size))


def _newton(x: np.ndarray, target: np.ndarray, w: np.ndarray, max_iter: int) -> np.ndarray:
    """Minimise the mean log-loss of ``sigmoid(x @ w)`` against soft ``target`` (damped Newton)."""

    def loss(weights: np.ndarray) -> float:
        logits = x @ weights
        # log(1 + e^t) - target * t, stably
        return float(np.mean(np.logaddexp(0.0, logits) - target * logits))

    current = loss(w)
    ridge = 1e-9 * np.eye(x.shape[1])
    for _ in range(max_iter):
        p = sigmoid(x @ w)
        gradient = x.T @ (p - target) / len(target)
        hessian = (x * (p * (1 - p))[:, None]).T @ x / len(target) + ridge
        try:
            direction = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            direction = gradient
        step = 1.0
        while step > 1e-8:
            candidate = w - step * direction
            value = loss(candidate)
            if value <= current:
                break
            step *= 0.5
        else:
            break
        improvement = current - value
        w, current = candidate, value
        if improvement < 1e-12:
            break
    return w


def expected_calibration_error(
    probs: Sequence[float] | np.ndarray, labels: Sequence[int | bool] | np.ndarray, n_bins: int = 10
) -> float:
    """ECE: the weighted mean |accuracy − confidence| over ``n_bins`` equal-width bins of [0, 1]."""
    p = _floats(probs, "probabilities")
    y = _labels(labels)
    if p.shape != y.shape:
        raise ConfigError(f"{p.size} probabilities but {y.size} labels")
    positive_int("n_bins", n_bins)
    if p.size == 0:
        raise ConfigError("expected_calibration_error needs at least one example")
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ConfigError("probabilities must lie in [0, 1]")
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            total += mask.sum() * abs(y[mask].mean() - p[mask].mean())
    return float(total / p.size)


def _floats(values: Any, what: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be numbers: {one_line(exc)}") from exc


def _labels(labels: Any) -> np.ndarray:
    """Binary labels as floats; anything but 0/1/True/False is a :class:`ConfigError`."""
    try:
        y = np.asarray(labels).ravel()
        ok = y.dtype.kind in "biuf" and bool(np.all(np.isin(y, (0, 1))))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError("labels must be 0/1 (or booleans)")
    return y.astype(np.float64)


class _Scorer(Protocol):
    def score(self, query: Query, candidates: Sequence[Candidate]) -> Sequence[Any]: ...


def content_free_logodds(
    scorer: _Scorer,
    candidates: Sequence[Candidate],
    queries: Sequence[str | Query] = DEFAULT_CONTENT_FREE_QUERIES,
) -> np.ndarray:
    """Mean log-odds each candidate gets for content-free queries (its prior under the model)."""
    if not queries:
        raise ConfigError("content_free_logodds needs at least one content-free query")
    rows = []
    for query in queries:
        q = query if isinstance(query, Query) else Query(text=query)
        rows.append(_logodds(scorer.score(q, candidates), len(candidates)))
    return np.mean(np.vstack(rows), axis=0) if candidates else np.zeros(0)


def prior_corrected_logodds(
    scorer: _Scorer,
    query: Query,
    candidates: Sequence[Candidate],
    *,
    prior: np.ndarray | Sequence[float] | None = None,
    queries: Sequence[str | Query] = DEFAULT_CONTENT_FREE_QUERIES,
) -> np.ndarray:
    """The query's log-odds minus each candidate's content-free prior (computed unless given).

    Pass ``prior`` (from :func:`content_free_logodds`) to reuse it across queries; fit the
    calibration on corrected log-odds when you use corrected log-odds at query time.
    """
    raw = _logodds(scorer.score(query, candidates), len(candidates))
    base = content_free_logodds(scorer, candidates, queries) if prior is None else np.asarray(prior, dtype=np.float64)
    if base.shape != raw.shape:
        raise ConfigError(f"prior has {base.size} values for {raw.size} candidates")
    # no usable prior (the content-free query could not be scored): leave that candidate as it is;
    # a candidate the query could not be scored for stays unscorable (-inf), never NaN
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(base), raw - base, raw)


def _logodds(scores: Sequence[Any], n: int) -> np.ndarray:
    if len(scores) != n:
        raise ConfigError(f"scorer returned {len(scores)} scores for {n} candidates")
    return np.array([float(getattr(s, "logodds", s)) for s in scores], dtype=np.float64)


__all__ = [
    "Calibration",
    "DEFAULT_CONTENT_FREE_QUERIES",
    "content_free_logodds",
    "expected_calibration_error",
    "fit_calibration",
    "logit",
    "prior_corrected_logodds",
    "sigmoid",
]
