"""Chroma, embedded or remote, as a small vector store of our records.

One :class:`ChromaStore` wraps one collection in cosine space. The collection records which
embedder (name and dimension) filled it, so reopening it with another model fails loudly instead
of mixing incompatible vectors. Chroma's anonymous telemetry is off unless asked for.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, StoreError

logger = logging.getLogger(__name__)

EMBEDDER_KEY = "mmrag_embedder"
DIMENSION_KEY = "mmrag_dimension"
_SCALARS = (str, int, float, bool)
#: Chroma caps ``get``/``delete`` batches; we page through ids in chunks of this size.
_PAGE = 5000


@dataclass
class Hit:
    """One query result: ``similarity`` is ``1 - cosine distance`` (cosine similarity)."""

    id: str
    similarity: float
    metadata: dict[str, Any] = field(default_factory=dict)
    document: str | None = None


def make_client(
    path: str | Path | None = ".mm-rag/chroma",
    *,
    host: str | None = None,
    port: int = 8000,
    ssl: bool = False,
    headers: Mapping[str, str] | None = None,
    telemetry: bool = False,
) -> Any:
    """An embedded ``PersistentClient(path)``, or an ``HttpClient`` when ``host`` is given."""
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=telemetry)
    try:
        if host is not None:
            return chromadb.HttpClient(host=host, port=port, ssl=ssl, headers=dict(headers or {}), settings=settings)
        if path is None:
            raise ConfigError("give a Chroma path for the embedded store, or host/port for a server")
        Path(path).mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=settings)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - chromadb raises many types; one plain error for users
        where = f"Chroma server at {host}:{port}" if host is not None else f"Chroma database at {path}"
        raise StoreError(f"cannot open {where}: {exc}") from exc


def flatten_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """User metadata in Chroma's scalar types: ``None`` dropped, other non-scalars as JSON text."""
    flat: dict[str, Any] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"metadata keys must be non-empty strings, got {key!r}")
        if value is None:
            continue
        if isinstance(value, _SCALARS):
            flat[key] = value
        elif isinstance(value, (bytes, bytearray)):
            raise ConfigError(f"metadata {key!r}: binary values are not stored (no blobs in metadata)")
        else:
            try:
                flat[key] = json.dumps(value, sort_keys=True, default=str)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"metadata {key!r} cannot be stored: {exc}") from exc
    return flat


class ChromaStore:
    """One cosine-space Chroma collection bound to one embedder (name + dimension)."""

    def __init__(self, client: Any, collection: str, *, embedder_name: str, dimension: int) -> None:
        self.client = client
        self.name = collection
        self.embedder_name = embedder_name
        self.dimension = int(dimension)
        try:
            self._collection = client.get_or_create_collection(
                collection,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={EMBEDDER_KEY: embedder_name, DIMENSION_KEY: self.dimension},
                embedding_function=None,
            )
        except Exception as exc:  # noqa: BLE001
            raise StoreError(f"cannot open collection {collection!r}: {exc}") from exc
        meta = self._collection.metadata or {}
        if meta.get(EMBEDDER_KEY) != embedder_name or meta.get(DIMENSION_KEY) != self.dimension:
            raise StoreError(
                f"collection {collection!r} was built with embedder {meta.get(EMBEDDER_KEY)!r} "
                f"(dimension {meta.get(DIMENSION_KEY)}), not {embedder_name!r} (dimension {self.dimension}); "
                "use the same model, another collection name, or delete the collection"
            )

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except Exception as exc:  # noqa: BLE001
            raise StoreError(f"Chroma {what} on {self.name!r} failed: {exc}") from exc

    def count(self) -> int:
        return int(self._call("count", self._collection.count))

    def upsert(
        self,
        ids: Sequence[str],
        embeddings: np.ndarray,
        metadatas: Sequence[Mapping[str, Any]],
        documents: Sequence[str | None] | None = None,
    ) -> None:
        """Insert or replace records. Embeddings must match the store's dimension."""
        if not ids:
            return
        vectors = np.asarray(embeddings, dtype=np.float32)
        if vectors.shape != (len(ids), self.dimension):
            raise StoreError(f"expected embeddings of shape ({len(ids)}, {self.dimension}), got {vectors.shape}")
        self._call(
            "upsert",
            self._collection.upsert,
            ids=list(ids),
            embeddings=vectors,
            metadatas=[dict(m) for m in metadatas],
            documents=list(documents) if documents is not None else None,
        )

    def existing(self, ids: Sequence[str]) -> set[str]:
        """The subset of ``ids`` already stored."""
        found: set[str] = set()
        for start in range(0, len(ids), _PAGE):
            page = list(ids[start : start + _PAGE])
            found.update(self._call("get", self._collection.get, ids=page, include=[])["ids"])
        return found

    def get(self, *, ids: Sequence[str] | None = None, where: dict | None = None) -> list[Hit]:
        """Records by id or metadata filter (similarity is NaN: there is no query)."""
        got = self._call(
            "get", self._collection.get, ids=list(ids) if ids is not None else None, where=where,
            include=["metadatas", "documents"],
        )
        return [
            Hit(id_, float("nan"), dict(meta or {}), doc)
            for id_, meta, doc in zip(got["ids"], got["metadatas"], got["documents"])
        ]

    def ids(self, where: dict | None = None) -> list[str]:
        return list(self._call("get", self._collection.get, where=where, include=[])["ids"])

    def iter_metadata(self, batch: int = _PAGE) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every (id, metadata) pair, paged so memory stays bounded."""
        offset = 0
        while True:
            got = self._call("get", self._collection.get, include=["metadatas"], limit=batch, offset=offset)
            if not got["ids"]:
                return
            yield from zip(got["ids"], (dict(m or {}) for m in got["metadatas"]))
            offset += len(got["ids"])

    def delete(self, *, ids: Sequence[str] | None = None, where: dict | None = None) -> int:
        """Delete by ids and/or metadata filter; returns how many records went."""
        targets = list(ids) if ids is not None else []
        if where is not None:
            targets.extend(self.ids(where))
        targets = sorted(set(targets))
        for start in range(0, len(targets), _PAGE):
            self._call("delete", self._collection.delete, ids=targets[start : start + _PAGE])
        return len(targets)

    def query(self, embedding: np.ndarray, k: int, *, where: dict | None = None) -> list[Hit]:
        """The ``k`` nearest records to ``embedding`` (cosine), best first."""
        if k < 1:
            raise ConfigError(f"top-k must be >= 1, got {k}")
        vector = np.asarray(embedding, dtype=np.float32).reshape(1, -1)
        if vector.shape[1] != self.dimension:
            raise StoreError(f"query vector has dimension {vector.shape[1]}, the store holds {self.dimension}")
        got = self._call(
            "query", self._collection.query, query_embeddings=vector, n_results=k, where=where,
            include=["metadatas", "documents", "distances"],
        )
        return [
            Hit(id_, 1.0 - float(dist), dict(meta or {}), doc)
            for id_, dist, meta, doc in zip(got["ids"][0], got["distances"][0], got["metadatas"][0], got["documents"][0])
        ]


__all__ = ["ChromaStore", "Hit", "flatten_metadata", "make_client"]
