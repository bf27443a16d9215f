"""Pieces of ``scale.py``: seeded synthetic data generated block by block (never all in memory)
and exact top-k by streaming (the servers and machine facts are in ``servers.py``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

DIM = 512
#: Rows per generated block: every block is seeded by its index, so any row range can be regenerated.
BLOCK = 1000


# --- the data --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Data:
    """Seeded 512-d unit vectors. ``clustered``: a mixture of ``clusters`` Gaussian clusters
    (point = centre + ``noise`` × N(0, I), normalised), structured like real embeddings;
    ``uniform``: uniform on the sphere, no structure at all (HNSW's worst case)."""

    kind: str = "clustered"
    seed: int = 0
    clusters: int = 1024
    noise: float = 1.0

    def centres(self) -> np.ndarray:
        return np.random.default_rng([self.seed, 1 << 30]).standard_normal((self.clusters, DIM), dtype=np.float32)

    def draw(self, rng: np.random.Generator, n: int, centres: np.ndarray | None) -> np.ndarray:
        """``n`` unit vectors from this distribution."""
        noise = rng.standard_normal((n, DIM), dtype=np.float32)
        if self.kind == "clustered":
            noise *= self.noise
            noise += centres[rng.integers(0, self.clusters, n)]
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        return noise

    def vectors(self, start: int, stop: int, centres: np.ndarray | None = None) -> np.ndarray:
        """Rows ``[start, stop)`` (multiples of :data:`BLOCK`), the same on every call."""
        centres = self.centres() if centres is None and self.kind == "clustered" else centres
        blocks = [self.draw(np.random.default_rng([self.seed, b]), BLOCK, centres) for b in range(start // BLOCK, stop // BLOCK)]
        return np.concatenate(blocks) if len(blocks) > 1 else blocks[0]

    def queries(self, n: int, salt: int) -> np.ndarray:
        """``n`` held-out vectors from the same distribution (not stored)."""
        return self.draw(np.random.default_rng([self.seed, 1 << 31, salt]), n, self.centres() if self.kind == "clustered" else None)


def records(start: int, stop: int) -> tuple[list[str], list[dict[str, Any]]]:
    """Ids and metadata of rows ``[start, stop)``: the keys ingest writes (source, file name,
    modality, a sha256 hex digest, a chunk number)."""
    ids, metas = [], []
    for i in range(start, stop):
        digest = hashlib.sha256(i.to_bytes(8, "little")).hexdigest()
        name = f"item-{i:07d}.{'jpg' if i % 4 else 'txt'}"
        ids.append(f"{digest[:24]}:{i}")
        metas.append({"source": f"/corpus/shard-{i % 97:02d}/{name}", "file_name": name,
                      "modality": "image" if i % 4 else "text", "sha256": digest, "chunk": i % 8})
    return ids, metas


def exact_top_k(data: Data, queries: np.ndarray, n: int, k: int, step: int = 5 * BLOCK) -> np.ndarray:
    """Indices of the exact ``k`` nearest rows (cosine) among rows ``[0, n)``, per query:
    regenerated batch by batch, so memory is one batch plus ``queries × k``."""
    best_sim = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_idx = np.zeros((len(queries), k), dtype=np.int64)
    centres = data.centres() if data.kind == "clustered" else None
    for start in range(0, n, step):
        stop = min(n, start + step)
        sims = queries @ data.vectors(start, stop, centres).T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        sim = np.concatenate([best_sim, np.take_along_axis(sims, top, axis=1)], axis=1)
        idx = np.concatenate([best_idx, top + start], axis=1)
        keep = np.argsort(-sim, axis=1, kind="stable")[:, :k]
        best_sim, best_idx = np.take_along_axis(sim, keep, axis=1), np.take_along_axis(idx, keep, axis=1)
    return best_idx
