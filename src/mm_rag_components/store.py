"""Chroma, embedded or remote, as a small vector store of our records.

One :class:`ChromaStore` wraps one collection in cosine space. The collection records which
embedder (name and dimension) filled it, so reopening it with another model fails loudly instead
of mixing incompatible vectors. Chroma's anonymous telemetry is off unless asked for. Every
chromadb failure surfaces as a :class:`~mm_rag_components.errors.StoreError` with a plain message.

User metadata is stored in Chroma's types by :func:`~mm_rag_components.metadata.flatten_metadata`
(rules there). Every record is checked before it is sent (:func:`~mm_rag_components.metadata.check_record`).
Calls are paged by the client's maximum batch size.

HNSW settings (``hnsw=``, :mod:`~mm_rag_components.hnsw`) are given to Chroma when it creates the
collection. On an existing collection the search-time ones are updated when they differ; a
differing build-time one is a ``StoreError``.
Chroma (1.5) stores an update at once but uses it when it next loads the index: a running server
or embedded process keeps the index it has loaded (with the old ``ef_search``) until it restarts.

Opening a client (embedded folder or server) and the writer lock live in
:mod:`~mm_rag_components.chroma_client`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .chroma_client import (  # noqa: F401 - re-exported: the store's names since 0.1
    CONCURRENT_WRITER_WARNING, WRITER_LOCK_NAME, make_client, plain_message, writer_lock,
)
from .errors import ConfigError, StoreError
from .hnsw import check_hnsw, hnsw_update, stored_hnsw
from .metadata import check_record

logger = logging.getLogger(__name__)

EMBEDDER_KEY = "mmrag_embedder"
DIMENSION_KEY = "mmrag_dimension"
#: Largest page for ``get``/``delete`` by ids or ``$in`` (SQLite caps variables per statement).
_PAGE = 5000
#: Page size when the client does not say its maximum batch size.
_DEFAULT_PAGE = 1000
@dataclass
class Hit:
    """One stored record; from a query, ``similarity`` is ``1 - cosine distance`` (else NaN)."""

    id: str
    similarity: float
    metadata: dict[str, Any] = field(default_factory=dict)
    document: str | None = None


def _is_missing(exc: BaseException) -> bool:
    return type(exc).__name__ == "NotFoundError" or "does not exist" in str(exc).lower()


def _pages(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


class ChromaStore:
    """One cosine-space Chroma collection bound to one embedder (name + dimension).

    ``client`` is a chromadb client (see :func:`make_client`). Reopening a collection filled by
    another embedder or dimension raises :class:`StoreError`; an empty collection that lacks our
    keys is adopted when written to.

    ``hnsw``: Chroma HNSW settings (:func:`~mm_rag_components.hnsw.check_hnsw`; space is always cosine), used when the
    collection is created; on an existing one, differing ``ef_search``/``sync_threshold``/
    ``resize_factor`` are updated (Chroma uses them once it reloads the index, e.g. after a
    server restart) and a differing ``ef_construction``/``max_neighbors`` raises :class:`StoreError`.

    ``create_on_open=True`` (default) creates the collection now. With ``False`` nothing is
    created until the first write (:meth:`upsert` or :meth:`ensure`): reads of a missing
    collection find nothing, and :meth:`query` raises ``StoreError("... does not exist; ingest
    first")``, so a query never creates a collection bound to the querying model.

    Several processes: one writer per embedded database; share one through a server (module doc).
    """

    def __init__(
        self,
        client: Any,
        collection: str,
        *,
        embedder_name: str,
        dimension: int,
        create_on_open: bool = True,
        hnsw: Mapping[str, Any] | None = None,
    ) -> None:
        self.hnsw = check_hnsw(hnsw)
        self.client = client
        self.name = collection
        self.embedder_name = embedder_name
        self.dimension = int(dimension)
        self.create_on_open = bool(create_on_open)
        self._collection: Any = None
        self._bound = False
        self._page: int | None = None
        if create_on_open:
            self.ensure()

    def __repr__(self) -> str:
        return f"ChromaStore({self.name!r}, embedder={self.embedder_name!r}, dimension={self.dimension})"

    def config(self) -> dict[str, Any]:
        """Where the store is (the client's database folder, or its server's host and port) and
        its arguments; :meth:`from_config` opens a client there again. A store on an in-memory
        client cannot be saved."""
        settings = self.client.get_settings()
        if settings.is_persistent and settings.persist_directory:
            where: dict[str, Any] = {"path": settings.persist_directory}
        elif settings.chroma_server_host:
            where = {"host": settings.chroma_server_host, "port": int(settings.chroma_server_http_port or 8000)}
        else:
            raise ConfigError("a ChromaStore on an in-memory client cannot be saved; open it with make_client(path) or host=")
        return {
            **where, "collection": self.name, "embedder_name": self.embedder_name, "dimension": self.dimension,
            "create_on_open": self.create_on_open, "hnsw": dict(self.hnsw) or None,
        }

    @classmethod
    def from_config(
        cls, *, path: str | None = None, host: str | None = None, port: int = 8000, **arguments: Any,
    ) -> ChromaStore:
        """A store rebuilt from :meth:`config`: a client opened with :func:`make_client`."""
        return cls(make_client(path, host=host, port=port), **arguments)

    @property
    def page_size(self) -> int:
        """Records per Chroma call: the client's ``get_max_batch_size()`` (asked once), at most
        5000; 1000 when the client does not say."""
        if self._page is None:
            try:
                size = int(self.client.get_max_batch_size())
            except Exception:  # noqa: BLE001 - older clients, servers without the pre-flight answer
                size = -1
            self._page = min(size, _PAGE) if size > 0 else _DEFAULT_PAGE
        return self._page

    def ensure(self) -> None:
        """Create the collection (bound to this embedder) unless it exists; check it if it does."""
        self._handle(create=True)

    def _handle(self, *, create: bool) -> Any:
        """The chromadb collection; ``None`` when it does not exist and ``create`` is False."""
        if self._collection is not None and (self._bound or not create):
            return self._collection
        expected = {EMBEDDER_KEY: self.embedder_name, DIMENSION_KEY: self.dimension}
        try:
            if create:
                handle = self.client.get_or_create_collection(
                    self.name, configuration={"hnsw": {**self.hnsw, "space": "cosine"}}, metadata=expected,
                    embedding_function=None,
                )
            else:
                handle = self.client.get_collection(self.name, embedding_function=None)
        except Exception as exc:  # noqa: BLE001
            if not create and _is_missing(exc):
                return None
            raise StoreError(f"cannot open Chroma collection {self.name!r}: {plain_message(exc)}") from exc
        self._check_binding(handle, adopt=create)
        if self.hnsw:
            self._apply_hnsw(handle)
        self._collection = handle
        return handle

    def hnsw_settings(self) -> dict[str, Any]:
        """The HNSW settings Chroma holds for the collection (``{}`` when it does not exist)."""
        handle = self._handle(create=False)
        return {} if handle is None else stored_hnsw(handle)

    def _apply_hnsw(self, handle: Any) -> None:
        """Reconcile ``self.hnsw`` with an existing collection's stored settings (class doc)."""
        stored = stored_hnsw(handle)
        differ = hnsw_update(self.name, self.hnsw, stored)
        if differ:
            logger.info(
                "Chroma collection %r: updating HNSW %s (was %s); Chroma uses them when it next loads the index "
                "(a running server keeps the loaded one until it restarts)", self.name, differ, {k: stored[k] for k in differ},
            )
            self._call("modify", handle.modify, configuration={"hnsw": differ})

    def _check_binding(self, handle: Any, *, adopt: bool) -> None:
        meta = dict(handle.metadata or {})
        if EMBEDDER_KEY in meta:
            if meta.get(EMBEDDER_KEY) != self.embedder_name or meta.get(DIMENSION_KEY) != self.dimension:
                raise StoreError(
                    f"collection {self.name!r} was built with embedder {meta.get(EMBEDDER_KEY)!r} "
                    f"(dimension {meta.get(DIMENSION_KEY)}), not {self.embedder_name!r} (dimension {self.dimension}); "
                    "use the same model, another collection name, or delete the collection"
                )
            self._bound = True
            return
        if self._call("count", handle.count):
            raise StoreError(
                f"collection {self.name!r} holds records that mm-rag-components did not write "
                "(no embedder recorded); use another collection name"
            )
        if adopt:
            expected = {EMBEDDER_KEY: self.embedder_name, DIMENSION_KEY: self.dimension}
            self._call("modify", handle.modify, metadata={**meta, **expected})
            self._bound = True

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except Exception as exc:  # noqa: BLE001 - chromadb/httpx raise many types
            raise StoreError(f"Chroma {what} on collection {self.name!r} failed: {plain_message(exc)}") from exc

    def count(self) -> int:
        """How many records the collection holds (0 when it does not exist)."""
        handle = self._handle(create=False)
        return 0 if handle is None else int(self._call("count", handle.count))

    def upsert(
        self,
        ids: Sequence[str],
        embeddings: np.ndarray,
        metadatas: Sequence[Mapping[str, Any]],
        documents: Sequence[str | None] | None = None,
    ) -> None:
        """Insert or replace records, in pages of :attr:`page_size`. Embeddings must match the
        store's dimension; every record is checked first (:func:`check_record`), so a bad one
        raises :class:`StoreError` before anything is sent."""
        if not ids:
            return
        vectors = np.asarray(embeddings, dtype=np.float32)
        if vectors.shape != (len(ids), self.dimension):
            raise StoreError(f"expected embeddings of shape ({len(ids)}, {self.dimension}), got {vectors.shape}")
        if len(metadatas) != len(ids) or (documents is not None and len(documents) != len(ids)):
            raise StoreError("ids, metadatas and documents must have the same length")
        if not np.isfinite(vectors).all():
            raise StoreError("embeddings contain NaN or infinite values")
        if len(set(ids)) != len(ids):
            raise StoreError("ids must be unique within one upsert")
        docs = list(documents) if documents is not None else [None] * len(ids)
        for id_, meta, doc in zip(ids, metadatas, docs):
            check_record(id_, meta, doc)
        handle, page = self._handle(create=True), self.page_size
        for i in range(0, len(ids), page):
            self._call(
                "upsert", handle.upsert, ids=list(ids[i : i + page]), embeddings=vectors[i : i + page],
                metadatas=[dict(m) for m in metadatas[i : i + page]], documents=docs[i : i + page] if documents is not None else None,
            )

    def existing(self, ids: Sequence[str]) -> set[str]:
        """The subset of ``ids`` already stored."""
        handle = self._handle(create=False)
        found: set[str] = set()
        for page in _pages(ids, self.page_size) if handle is not None else ():
            found.update(self._call("get", handle.get, ids=page, include=[])["ids"])
        return found

    def ids_by_source(self, sources: Sequence[str]) -> dict[str, set[str]]:
        """For each source, the ids of its stored records (one ``$in`` lookup per page)."""
        found: dict[str, set[str]] = {s: set() for s in sources}
        handle = self._handle(create=False)
        for page in _pages(list(found), self.page_size) if handle is not None else ():
            where = {"source": page[0]} if len(page) == 1 else {"source": {"$in": page}}
            got = self._call("get", handle.get, where=where, include=["metadatas"])
            for id_, meta in zip(got["ids"], got["metadatas"]):
                found.setdefault(str((meta or {}).get("source")), set()).add(id_)
        return found

    def get(self, *, ids: Sequence[str] | None = None, where: dict | None = None, limit: int | None = None) -> list[Hit]:
        """Records by id and/or metadata filter (``similarity`` is NaN: there is no query)."""
        handle = self._handle(create=False)
        if handle is None:
            return []
        hits: list[Hit] = []
        for page in _pages(ids, self.page_size) if ids is not None else [None]:
            want = None if limit is None else limit - len(hits)
            if want is not None and want <= 0:
                break
            got = self._call("get", handle.get, ids=page, where=where, limit=want, include=["metadatas", "documents"])
            hits.extend(
                Hit(id_, float("nan"), dict(meta or {}), doc)
                for id_, meta, doc in zip(got["ids"], got["metadatas"], got["documents"])
            )
        return hits

    def ids(self, where: dict | None = None) -> list[str]:
        """Ids of every record matching ``where`` (all records when ``None``), read in pages."""
        return [id_ for id_, _ in self._scan(where, [], None)]

    def iter_metadata(self, batch: int | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every (id, metadata) pair, paged so memory stays bounded."""
        return self._scan(None, ["metadatas"], batch)

    def _scan(self, where: dict | None, include: list[str], batch: int | None) -> Iterator[tuple[str, dict[str, Any]]]:
        handle, offset, batch = self._handle(create=False), 0, batch or self.page_size
        while handle is not None:
            got = self._call("get", handle.get, where=where, include=include, limit=batch, offset=offset)
            yield from zip(got["ids"], (dict(m or {}) for m in got.get("metadatas") or [{}] * len(got["ids"])))
            offset += len(got["ids"])
            if len(got["ids"]) < batch:
                return

    def delete(self, *, ids: Sequence[str] | None = None, where: dict | None = None) -> int:
        """Delete by ids and/or metadata filter, in pages; returns how many stored records went."""
        if ids is None and where is None:
            raise ConfigError("delete needs ids or a where filter")
        handle = self._handle(create=False)
        if handle is None:
            return 0
        targets = self.existing(list(ids)) if ids is not None else set()
        if where is not None:
            targets.update(self.ids(where))
        ordered = sorted(targets)
        for page in _pages(ordered, self.page_size):
            self._call("delete", handle.delete, ids=page)
        return len(ordered)

    def query(self, embedding: np.ndarray, k: int, *, where: dict | None = None) -> list[Hit]:
        """The ``k`` nearest records to ``embedding`` (cosine), best first.

        A missing collection raises :class:`StoreError` (ingest first); an empty one gives ``[]``
        and a logged warning."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"top-k must be an integer >= 1, got {k!r}")
        vector = np.asarray(embedding, dtype=np.float32).reshape(1, -1)
        if vector.shape[1] != self.dimension:
            raise StoreError(f"query vector has dimension {vector.shape[1]}, the store holds {self.dimension}")
        handle = self._handle(create=False)
        if handle is None:
            raise StoreError(f"collection {self.name!r} does not exist; ingest first")
        got = self._call(
            "query", handle.query, query_embeddings=vector, n_results=k, where=where,
            include=["metadatas", "documents", "distances"],
        )
        hits = [
            Hit(id_, 1.0 - float(dist), dict(meta or {}), doc)
            for id_, dist, meta, doc in zip(got["ids"][0], got["distances"][0], got["metadatas"][0], got["documents"][0])
        ]
        if not hits and self.count() == 0:
            logger.warning("Chroma collection %r is empty; ingest first", self.name)
        return hits


__all__ = [
    "CONCURRENT_WRITER_WARNING",
    "ChromaStore",
    "Hit",
    "make_client",
    "writer_lock",
]
