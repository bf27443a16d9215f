"""Chroma, embedded or remote, as a small vector store of our records.

One :class:`ChromaStore` wraps one collection in cosine space. The collection records which
embedder (name and dimension) filled it, so reopening it with another model fails loudly instead
of mixing incompatible vectors. Chroma's anonymous telemetry is off unless asked for. Every
chromadb failure surfaces as a :class:`~mm_rag_components.errors.StoreError` with a plain message.

User metadata is stored in Chroma's types by :func:`flatten_metadata` (conversion rules there).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, StoreError

logger = logging.getLogger(__name__)

EMBEDDER_KEY = "mmrag_embedder"
DIMENSION_KEY = "mmrag_dimension"
#: Metadata keys our components write; user metadata may not use them.
RESERVED_KEYS = frozenset({"modality", "source", "file_name", "sha256", "chunk", "cosine", "score_scale", "rank"})
#: Longest string accepted as a metadata value (metadata is for labels, not payloads).
MAX_METADATA_CHARS = 65_536
_INT64 = 2**63
#: Chroma caps ``get``/``delete`` batches; we page through ids in chunks of this size.
_PAGE = 5000


@dataclass
class Hit:
    """One stored record; from a query, ``similarity`` is ``1 - cosine distance`` (else NaN)."""

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
    """An embedded ``PersistentClient(path)``, or an ``HttpClient(host, port)`` when ``host`` is given.

    Anonymous telemetry is off unless ``telemetry=True``. An unreachable server or unusable
    path raises :class:`StoreError`.
    """
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=telemetry)
    try:
        if host is not None:
            return chromadb.HttpClient(host=host, port=port, ssl=ssl, headers=dict(headers or {}), settings=settings)
        if path is None:
            raise ConfigError("give a Chroma path for the embedded store, or host/port for a server")
        Path(path).expanduser().mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(Path(path).expanduser()), settings=settings)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - chromadb raises many types; one plain error for users
        where = f"Chroma server at {host}:{port}" if host is not None else f"Chroma database at {path}"
        raise StoreError(f"cannot open {where}: {_plain(exc)}") from exc


def flatten_metadata(metadata: Mapping[str, Any], *, reserved: Iterable[str] = RESERVED_KEYS) -> dict[str, Any]:
    """User metadata in Chroma's types. Documented conversion:

    * ``str``, ``int``, ``float``, ``bool`` stay as they are; ``None`` and empty lists are dropped;
    * nested mappings flatten to dotted keys (``{"exif": {"iso": 100}}`` → ``"exif.iso": 100``);
    * lists / tuples / sets of one scalar type stay lists (so ``$contains`` filters work; ints
      mixed with floats become floats); any other list becomes its JSON text;
    * ``datetime``/``date`` become ISO-8601 text, other objects (``Path``, enums …) ``str(value)``.

    Refused with :class:`ConfigError`: non-string or reserved keys (``modality``, ``source`` …),
    keys starting with ``$`` or ``chroma:``, bytes and images (no blobs in metadata), ``data:``
    URIs, strings over :data:`MAX_METADATA_CHARS`, NaN/infinite floats, integers beyond 64 bits.
    """
    reserved = frozenset(reserved)
    flat: dict[str, Any] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"metadata keys must be non-empty strings, got {key!r}")
        if key in reserved:
            raise ConfigError(f"metadata key {key!r} is reserved (reserved: {', '.join(sorted(reserved))})")
        if key.startswith(("$", "chroma:")):
            raise ConfigError(f"metadata key {key!r}: keys may not start with '$' or 'chroma:'")
        if isinstance(value, Mapping):
            nested = flatten_metadata({f"{key}.{k}" if isinstance(k, str) else k: v for k, v in value.items()}, reserved=reserved)
            flat.update(nested)
            continue
        converted = _metadata_value(key, value)
        if converted is not None:
            flat[key] = converted
    return flat


def _metadata_value(key: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (bool, str, int, float)):
        return _scalar(key, value)
    if isinstance(value, (bytes, bytearray, memoryview)) or hasattr(value, "getpixel"):
        raise ConfigError(f"metadata {key!r}: {type(value).__name__} values are not stored (no blobs in metadata)")
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else list(value)
        if not items:
            return None
        kinds = {bool if isinstance(v, bool) else type(v) for v in items}
        if kinds <= {int, float} and float in kinds:
            return [_scalar(key, float(v)) for v in items]
        if len(kinds) == 1 and kinds <= {bool, str, int, float}:
            return [_scalar(key, v) for v in items]
        try:
            return _scalar(key, json.dumps(items, sort_keys=True, default=str))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"metadata {key!r} cannot be stored: {exc}") from exc
    if hasattr(value, "isoformat"):
        return _scalar(key, value.isoformat())
    return _scalar(key, str(value))


def _scalar(key: str, value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not -_INT64 <= value < _INT64:
        raise ConfigError(f"metadata {key!r}: integer {value} does not fit in 64 bits; store it as a string")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"metadata {key!r}: {value} is not a finite number")
    if isinstance(value, str):
        if value.startswith("data:"):
            raise ConfigError(f"metadata {key!r}: data: URIs are not stored (no blobs in metadata)")
        if len(value) > MAX_METADATA_CHARS:
            raise ConfigError(f"metadata {key!r}: {len(value):,} characters is over the limit of {MAX_METADATA_CHARS:,}")
    return value


def _plain(exc: BaseException) -> str:
    """The first line of an exception's message, with its type when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ChromaStore:
    """One cosine-space Chroma collection bound to one embedder (name + dimension).

    ``client`` is a chromadb client (see :func:`make_client`). Reopening a collection filled by
    another embedder or dimension raises :class:`StoreError`; an empty collection that lacks our
    keys is adopted.
    """

    def __init__(self, client: Any, collection: str, *, embedder_name: str, dimension: int) -> None:
        self.client = client
        self.name = collection
        self.embedder_name = embedder_name
        self.dimension = int(dimension)
        expected = {EMBEDDER_KEY: embedder_name, DIMENSION_KEY: self.dimension}
        try:
            self._collection = client.get_or_create_collection(
                collection, configuration={"hnsw": {"space": "cosine"}}, metadata=expected, embedding_function=None
            )
        except Exception as exc:  # noqa: BLE001
            raise StoreError(f"cannot open Chroma collection {collection!r}: {_plain(exc)}") from exc
        meta = dict(self._collection.metadata or {})
        if EMBEDDER_KEY not in meta:
            if self.count():
                raise StoreError(
                    f"collection {collection!r} holds records that mm-rag-components did not write "
                    "(no embedder recorded); use another collection name"
                )
            self._call("modify", self._collection.modify, metadata={**meta, **expected})
        elif meta.get(EMBEDDER_KEY) != embedder_name or meta.get(DIMENSION_KEY) != self.dimension:
            raise StoreError(
                f"collection {collection!r} was built with embedder {meta.get(EMBEDDER_KEY)!r} "
                f"(dimension {meta.get(DIMENSION_KEY)}), not {embedder_name!r} (dimension {self.dimension}); "
                "use the same model, another collection name, or delete the collection"
            )

    def __repr__(self) -> str:
        return f"ChromaStore({self.name!r}, embedder={self.embedder_name!r}, dimension={self.dimension})"

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except Exception as exc:  # noqa: BLE001 - chromadb/httpx raise many types
            raise StoreError(f"Chroma {what} on collection {self.name!r} failed: {_plain(exc)}") from exc

    def count(self) -> int:
        """How many records the collection holds."""
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
        if len(metadatas) != len(ids) or (documents is not None and len(documents) != len(ids)):
            raise StoreError("ids, metadatas and documents must have the same length")
        if not np.isfinite(vectors).all():
            raise StoreError("embeddings contain NaN or infinite values")
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

    def ids_by_source(self, sources: Sequence[str]) -> dict[str, set[str]]:
        """For each source, the ids of its stored records (one ``$in`` lookup per page)."""
        found: dict[str, set[str]] = {s: set() for s in sources}
        unique = list(found)
        for start in range(0, len(unique), _PAGE):
            page = unique[start : start + _PAGE]
            where = {"source": page[0]} if len(page) == 1 else {"source": {"$in": page}}
            got = self._call("get", self._collection.get, where=where, include=["metadatas"])
            for id_, meta in zip(got["ids"], got["metadatas"]):
                found.setdefault(str((meta or {}).get("source")), set()).add(id_)
        return found

    def get(self, *, ids: Sequence[str] | None = None, where: dict | None = None, limit: int | None = None) -> list[Hit]:
        """Records by id and/or metadata filter (``similarity`` is NaN: there is no query)."""
        got = self._call(
            "get", self._collection.get, ids=list(ids) if ids is not None else None, where=where, limit=limit,
            include=["metadatas", "documents"],
        )
        return [
            Hit(id_, float("nan"), dict(meta or {}), doc)
            for id_, meta, doc in zip(got["ids"], got["metadatas"], got["documents"])
        ]

    def ids(self, where: dict | None = None) -> list[str]:
        """Ids of every record matching ``where`` (all records when ``None``)."""
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
        """Delete by ids and/or metadata filter; returns how many stored records went."""
        if ids is None and where is None:
            raise ConfigError("delete needs ids or a where filter")
        targets = self.existing(list(ids)) if ids is not None else set()
        if where is not None:
            targets.update(self.ids(where))
        ordered = sorted(targets)
        for start in range(0, len(ordered), _PAGE):
            self._call("delete", self._collection.delete, ids=ordered[start : start + _PAGE])
        return len(ordered)

    def query(self, embedding: np.ndarray, k: int, *, where: dict | None = None) -> list[Hit]:
        """The ``k`` nearest records to ``embedding`` (cosine), best first."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"top-k must be an integer >= 1, got {k!r}")
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


__all__ = ["ChromaStore", "Hit", "MAX_METADATA_CHARS", "RESERVED_KEYS", "flatten_metadata", "make_client"]
