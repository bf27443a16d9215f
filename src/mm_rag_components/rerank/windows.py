"""The arithmetic of listwise ranking: sliding windows, start permutations, Borda aggregation."""

from __future__ import annotations

import random
from collections.abc import Sequence

from ..errors import ConfigError
from ..validate import integer


def plan_windows(n: int, window_size: int, step: int) -> list[tuple[int, int]]:
    """``(start, end)`` windows from the back of ``n`` items to the front, head always covered.

    The last window is ``(0, min(n, window_size))``, so the head is compared with the items that
    bubbled up from behind it even when the strides do not divide evenly (RankGPT's loop can stop
    before the head when ``n - window_size`` is not a multiple of ``step``; this one cannot).
    """
    integer("window_size", window_size, minimum=2)
    integer("step", step, minimum=1)
    if step > window_size:
        raise ConfigError(f"step must be between 1 and window_size ({window_size}), got {step}")
    if n < 2:
        return []
    windows: list[tuple[int, int]] = []
    end = n
    while True:
        start = max(0, end - window_size)
        if start == 0:
            windows.append((0, min(n, window_size)))
            return windows
        windows.append((start, end))
        end -= step


def start_orders(n: int, permutations: int, seed: int) -> list[list[int]]:
    """The input order, then ``permutations - 1`` seeded shuffles of ``range(n)``."""
    rng = random.Random(seed)
    orders = [list(range(n))]
    for _ in range(permutations - 1):
        shuffled = list(range(n))
        rng.shuffle(shuffled)
        orders.append(shuffled)
    return orders


def borda_aggregate(rankings: Sequence[Sequence[int]], n: int) -> tuple[list[int], list[float]]:
    """Aggregate full rankings of ``range(n)`` by Borda count.

    Returns the aggregated order (ties broken by position in the first ranking) and each item's
    normalised score in [0, 1] (mean of ``(n - 1 - position) / (n - 1)`` over the rankings).
    """
    if not rankings:
        return list(range(n)), [1.0 if n == 1 else 0.0] * n
    points = [0.0] * n
    for ranking in rankings:
        if sorted(ranking) != list(range(n)):
            raise ConfigError("every ranking must be a permutation of range(n)")
        for position, index in enumerate(ranking):
            points[index] += n - 1 - position
    denominator = (n - 1) * len(rankings) if n > 1 else 1
    scores = [p / denominator if n > 1 else 1.0 for p in points]
    first_position = {index: pos for pos, index in enumerate(rankings[0])}
    order = sorted(range(n), key=lambda i: (-points[i], first_position[i]))
    return order, scores


__all__ = ["borda_aggregate", "plan_windows", "start_orders"]
