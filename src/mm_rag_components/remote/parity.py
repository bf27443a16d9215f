"""Parity: score the same pairs through a server and through a local scorer, and say how far apart
they are — max/mean |Δp| and rank agreement (Spearman, Kendall τ-b) per query and overall.

Measured on SmolLM2-135M-Instruct (its Q4_1 GGUF served by llama-cpp-python 0.3.36, raw-prompt
mode, ``top_logprobs=2000``, against the same GGUF dequantised to float32 in transformers; the 15
built-in pairs of ``mm-rag parity``), max / mean |Δp|:

* portable build (AVX2 kernels, ``-DGGML_NATIVE=OFF``, what ``make test`` installs): 0.055 / 0.022
  with the ``qwen3-vl-reranker`` template; 0.022 / 0.008 with the Qwen3 format that ends in an
  empty think block (where SmolLM2's p(yes) is lower, about 0.1);
* a build using the AVX-512 kernels (native, or ``-DGGML_AVX512=ON``) on the same AMD EPYC, think
  format: 0.069 / 0.021.

The weights are the same numbers on both sides; the gap is llama.cpp's quantised arithmetic (4-bit
weights times activations rounded to 8 bits, a float16 KV cache), and its size depends on the CPU
kernels and on where p lies. :data:`DEFAULT_TOLERANCE` is therefore 0.1; pass a tighter
``tolerance`` for 8-bit or float16 GGUFs, or to pin one build and template.

Rank agreement is only as good as the model's own spread. With ``qwen3-vl-reranker`` the mean
per-query Kendall τ is 0.87 (0.92 over all pairs pooled); in the think format SmolLM2's p(yes)
differs by only 0.02–0.04 between a query's candidates — the size of |Δp| — and τ drops to 0.4
(0.71 pooled). Chat mode is no parity check: the server applies its own chat template and the
answer's surface variants are summed (max |Δp| 0.21 with ``qwen3-vl-reranker``, 0.6 in the think
format, whose answer prefix a chat request cannot carry).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConfigError
from ..scoring.base import TRUNCATED, PointScore, RelevanceScorer
from ..types import Candidate, Query

DEFAULT_TOLERANCE = 0.1
Pairs = Sequence[tuple["Query | str", Sequence["Candidate | str"]]]


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1  # ties share their mean rank
        start = end + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's ρ (Pearson correlation of the ranks); ``None`` when undefined (n < 2, constant)."""
    if len(x) != len(y) or len(x) < 2:
        return None
    rx, ry = _ranks(x), _ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else None


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's τ-b (ties accounted for); ``None`` when undefined."""
    if len(x) != len(y) or len(x) < 2:
        return None
    concordant = discordant = tied_x = tied_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0:
                tied_x += 1
            if dy == 0:
                tied_y += 1
            if dx * dy > 0:
                concordant += 1
            elif dx * dy < 0:
                discordant += 1
    total = len(x) * (len(x) - 1) // 2
    denominator = math.sqrt((total - tied_x) * (total - tied_y))
    return (concordant - discordant) / denominator if denominator > 0 else None


@dataclass
class QueryParity:
    """One query: pairs compared, max |Δp|, and the rank agreement of its candidates."""

    query: str
    compared: int
    max_abs_dp: float | None
    spearman: float | None
    kendall: float | None


@dataclass
class ParityReport:
    """How far ``remote`` is from ``local`` over the pairs both scored cleanly."""

    pairs: int
    compared: int
    max_abs_dp: float | None
    mean_abs_dp: float | None
    spearman: float | None  # mean over queries
    kendall: float | None  # mean over queries
    overall_spearman: float | None  # all compared pairs pooled
    overall_kendall: float | None
    remote_flags: dict[str, int] = field(default_factory=dict)
    local_flags: dict[str, int] = field(default_factory=dict)
    queries: list[QueryParity] = field(default_factory=list)

    def within(self, tolerance: float = DEFAULT_TOLERANCE) -> bool:
        """True when some pairs were compared and no |Δp| exceeds ``tolerance``."""
        return self.max_abs_dp is not None and self.max_abs_dp <= tolerance

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self, tolerance: float | None = None) -> str:
        def num(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.4f}"

        lines = [
            f"pairs: {self.pairs} ({self.compared} scored cleanly by both)",
            f"|Δp|: max {num(self.max_abs_dp)}, mean {num(self.mean_abs_dp)}",
            f"rank agreement, mean over {len(self.queries)} queries: Spearman {num(self.spearman)}, Kendall {num(self.kendall)}",
            f"rank agreement, all pairs: Spearman {num(self.overall_spearman)}, Kendall {num(self.overall_kendall)}",
            f"flagged: remote {self.remote_flags or 'none'}, local {self.local_flags or 'none'}",
        ]
        if tolerance is not None:
            lines.append(f"within tolerance {tolerance:g}: {'yes' if self.within(tolerance) else 'NO'}")
        return "\n".join(lines)


def _clean(point: PointScore) -> bool:
    flags = set((point.flag or "").split(",")) - {"", TRUNCATED}
    return math.isfinite(point.logodds) and not flags


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _group(query: Query | str, candidates: Sequence[Candidate | str]) -> tuple[Query, list[Candidate]]:
    q = query if isinstance(query, Query) else Query(text=query)
    items = [c if isinstance(c, Candidate) else Candidate(id=str(i), modality="text", text=c) for i, c in enumerate(candidates)]
    return q, items


def parity(remote: RelevanceScorer, local: RelevanceScorer, pairs: Pairs) -> ParityReport:
    """Score every group ``(query, candidates)`` with both scorers and compare (see the module)."""
    if not pairs:
        raise ConfigError("parity needs at least one (query, candidates) group")
    remote_flags: Counter[str] = Counter()
    local_flags: Counter[str] = Counter()
    diffs: list[float] = []
    pooled_r: list[float] = []
    pooled_l: list[float] = []
    queries: list[QueryParity] = []
    total = 0
    for query, candidates in pairs:
        q, items = _group(query, candidates)
        r_points, l_points = remote.score(q, items), local.score(q, items)
        total += len(items)
        r_p: list[float] = []
        l_p: list[float] = []
        for rp, lp in zip(r_points, l_points):
            for counter, point in ((remote_flags, rp), (local_flags, lp)):
                for flag in filter(None, (point.flag or "").split(",")):
                    counter[flag] += 1
            if _clean(rp) and _clean(lp):
                r_p.append(rp.probability)
                l_p.append(lp.probability)
        query_diffs = [abs(a - b) for a, b in zip(r_p, l_p)]
        diffs += query_diffs
        pooled_r += r_p
        pooled_l += l_p
        queries.append(QueryParity(q.text or "<image>", len(r_p), max(query_diffs, default=None), spearman(r_p, l_p), kendall_tau(r_p, l_p)))
    rhos = [p.spearman for p in queries if p.spearman is not None]
    taus = [p.kendall for p in queries if p.kendall is not None]
    return ParityReport(
        pairs=total,
        compared=len(diffs),
        max_abs_dp=max(diffs, default=None),
        mean_abs_dp=_mean(diffs),
        spearman=_mean(rhos),
        kendall=_mean(taus),
        overall_spearman=spearman(pooled_r, pooled_l),
        overall_kendall=kendall_tau(pooled_r, pooled_l),
        remote_flags=dict(remote_flags),
        local_flags=dict(local_flags),
        queries=queries,
    )


__all__ = ["DEFAULT_TOLERANCE", "ParityReport", "QueryParity", "kendall_tau", "parity", "spearman"]
