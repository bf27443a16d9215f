"""Ingest folders or items into Chroma: walk, chunk, embed in batches, upsert idempotently.

Record ids derive from the source and the sha256 of the content, so re-ingesting an unchanged
file embeds nothing, a changed file replaces its old records, and files that vanished can be
removed. Bad files are skipped and reported with a reason; they never abort a run.

The pipeline streams: files are walked lazily and handled in windows of ``batch_size`` sources.
For each window the store is asked once which records exist; only new or changed images are
decoded, and at most one window of decoded images is alive at a time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import ConfigError, MediaError, ModelError
from .media import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, content_hash, decode_image, is_url, load_image_with_hash, read_image_bytes
from .store import ChromaStore, flatten_metadata, make_client
from .types import Item

if TYPE_CHECKING:  # pragma: no cover
    from .embedders import Embedder

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = frozenset({".txt", ".md"})


class Skipped(NamedTuple):
    """A bad input that was not indexed: ``(source, reason)``."""

    source: str
    reason: str


@dataclass
class IngestReport:
    """What an ingest run did, counted per source (file or item).

    ``records`` counts the records written (a text file gives one per chunk); ``ignored``
    counts files whose type is not ingested; ``skipped`` lists every bad input with the reason.
    """

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    ignored: int = 0
    records: int = 0
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was skipped."""
        return not self.skipped

    def summary(self) -> str:
        text = (
            f"added {self.added}, updated {self.updated}, unchanged {self.unchanged}, deleted {self.deleted}, "
            f"skipped {len(self.skipped)}, ignored {self.ignored} (unsupported types); {self.records} records written"
        )
        return text + "".join(f"\n  skipped {s.source}: {s.reason}" for s in self.skipped)


@dataclass
class _Entry:
    """One source read and hashed, waiting for the existence check and (maybe) embedding."""

    label: str
    source: str | None
    modality: str
    ids: list[str]
    metadatas: list[dict[str, Any]]
    documents: list[str | None]
    #: texts: the chunks; images: one element, raw bytes or an already decoded PIL image
    payloads: list[Any]
    stale: set[str] = field(default_factory=set)
    updated: bool = False


def _record_id(modality: str, source: str | None, digest: str, part: int = 0) -> str:
    return content_hash(f"{modality}\0{source or ''}\0{digest}\0{part}")[:40]


class MultimodalIndex:
    """Images and texts in Chroma, embedded with a CLIP-style model (and optionally a text model).

    Args: ``path`` of the embedded Chroma database, or ``host``/``port`` of a Chroma server, or a
    ready chromadb ``client``; ``image_embedder`` (an :class:`~mm_rag_components.embedders.Embedder`
    with the ``image`` modality); ``text_embedder`` (``None``: texts go through the image
    embedder's text tower, one shared space); ``collection`` name; ``chunk_size`` /
    ``chunk_overlap`` of LlamaIndex's ``SentenceSplitter`` (tokens; default 60 in the shared CLIP
    space, whose text tower sees 77 tokens, else 256); ``batch_size`` (sources per window and
    inputs per embedding call); ``max_pixels`` (decompression-bomb guard); ``telemetry``.

    Images live in the collection ``<collection>``, texts in ``<collection>-text`` (one collection
    per modality, so per-modality top-k needs no metadata filter). With a separate text embedder
    text scores are on another scale (see :mod:`mm_rag_components.retrieval`).
    """

    def __init__(
        self,
        path: str | Path | None = ".mm-rag/chroma",
        *,
        image_embedder: Embedder,
        text_embedder: Embedder | None = None,
        host: str | None = None,
        port: int = 8000,
        client: Any = None,
        collection: str = "mm_rag",
        chunk_size: int | None = None,
        chunk_overlap: int = 16,
        batch_size: int = 32,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        telemetry: bool = False,
    ) -> None:
        if "image" not in image_embedder.modalities:
            raise ConfigError(f"image_embedder {image_embedder.name!r} cannot embed images")
        if text_embedder is not None and "text" not in text_embedder.modalities:
            raise ConfigError(f"text_embedder {text_embedder.name!r} cannot embed text")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if chunk_size is not None and chunk_size < 8:
            raise ConfigError(f"chunk_size must be >= 8 tokens, got {chunk_size}")
        if chunk_overlap < 0:
            raise ConfigError(f"chunk_overlap must be >= 0, got {chunk_overlap}")
        self.image_embedder = image_embedder
        self.text_embedder = text_embedder
        self.collection = collection
        self.chunk_size = chunk_size or (256 if text_embedder is not None else 60)
        self.chunk_overlap = min(chunk_overlap, self.chunk_size // 2)
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.path = None if path is None else str(path)
        self.host, self.port, self.telemetry = host, port, telemetry
        self._own_client = client is None
        self._client = client if client is not None else make_client(path, host=host, port=port, telemetry=telemetry)
        self._image_store: ChromaStore | None = None
        self._text_store: ChromaStore | None = None
        self._splitter_instance: Any = None

    def __repr__(self) -> str:
        text = f", text_embedder={self.text_embedder.name!r}" if self.text_embedder is not None else ""
        return f"MultimodalIndex(collection={self.collection!r}, image_embedder={self.image_embedder.name!r}{text})"

    def config(self) -> dict[str, Any]:
        """Constructor arguments (see :mod:`mm_rag_components.config`); an index opened on a
        ready chromadb client cannot be saved (the client is not data)."""
        if not self._own_client:
            raise ConfigError("an index opened on a client object cannot be saved; open it with path= or host=")
        return {
            "path": None if self.host else self.path, "host": self.host, "port": self.port,
            "image_embedder": self.image_embedder, "text_embedder": self.text_embedder,
            "collection": self.collection, "chunk_size": self.chunk_size, "chunk_overlap": self.chunk_overlap,
            "batch_size": self.batch_size, "max_pixels": self.max_pixels, "telemetry": self.telemetry,
        }

    # stores --------------------------------------------------------------------------------
    @property
    def shared_space(self) -> bool:
        """True when texts and images are embedded in one space (scores comparable)."""
        return self.text_embedder is None

    @property
    def text_space_embedder(self) -> Embedder:
        """The embedder of the text collection."""
        return self.text_embedder or self.image_embedder

    @property
    def image_store(self) -> ChromaStore:
        if self._image_store is None:
            e = self.image_embedder
            self._image_store = ChromaStore(self._client, self.collection, embedder_name=e.name, dimension=e.dimension)
        return self._image_store

    @property
    def text_store(self) -> ChromaStore:
        if self._text_store is None:
            e = self.text_space_embedder
            self._text_store = ChromaStore(
                self._client, f"{self.collection}-text", embedder_name=e.name, dimension=e.dimension
            )
        return self._text_store

    def stores(self) -> list[ChromaStore]:
        return [self.image_store, self.text_store]

    def count(self) -> dict[str, int]:
        """Records per modality."""
        return {"image": self.image_store.count(), "text": self.text_store.count()}

    # ingest --------------------------------------------------------------------------------
    def ingest_folder(
        self,
        folder: str | Path,
        *,
        recursive: bool = True,
        delete_missing: bool = False,
        metadata: Mapping[str, Any] | None = None,
        show_progress: bool | None = None,
    ) -> IngestReport:
        """Ingest images (jpg/jpeg/png/webp/gif/bmp/tif/tiff) and texts (txt/md) under ``folder``.

        Hidden files and folders are left out; other types are counted as ``ignored``. With
        ``delete_missing`` the records of files under ``folder`` (only its top level when not
        ``recursive``) that no longer exist are deleted. ``metadata`` goes on every record.
        """
        root = Path(folder).expanduser().resolve()
        if not root.is_dir():
            raise ConfigError(f"{folder} is not a directory")
        user_meta = flatten_metadata(metadata or {})  # refuse bad metadata once, up front
        report = IngestReport()
        seen: set[str] = set()

        def walk_error(exc: OSError) -> None:
            report.skipped.append(Skipped(str(exc.filename or root), f"cannot list folder: {exc.strerror or exc}"))

        def entries() -> Iterator[_Entry | Skipped | None]:
            for dirpath, dirnames, filenames in os.walk(root, onerror=walk_error):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
                for name in sorted(filenames):
                    if name.startswith("."):
                        continue
                    path = Path(dirpath) / name
                    suffix = path.suffix.lower()
                    if suffix in IMAGE_SUFFIXES:
                        seen.add(str(path))
                        yield self._image_entry(path, str(path), user_meta, caption=None, label=str(path))
                    elif suffix in TEXT_SUFFIXES:
                        seen.add(str(path))
                        yield self._text_file_entry(path, user_meta)
                    else:
                        report.ignored += 1

        self._consume(entries(), report, show_progress)
        if delete_missing:
            report.deleted += self._delete_missing(root, seen, recursive)
        logger.info("ingest %s: %s", root, report.summary())
        return report

    def ingest(self, items: Iterable[Item], *, allow_urls: bool = False, show_progress: bool | None = None) -> IngestReport:
        """Ingest :class:`Item` objects: a text, an image, or an image with its caption.

        An image item stores its caption as the record's document (the image is what is
        embedded). Items with a ``source`` replace that source's older records.
        """
        report = IngestReport()

        def entries() -> Iterator[_Entry | Skipped | None]:
            for number, item in enumerate(items):
                label = f"item #{number}" + (f" ({item.source})" if isinstance(item, Item) and item.source else "")
                if not isinstance(item, Item):
                    yield Skipped(label, f"not an Item: {type(item).__name__}")
                    continue
                try:
                    meta = flatten_metadata(item.metadata)
                except ConfigError as exc:
                    yield Skipped(label, str(exc))
                    continue
                if item.image is not None:
                    yield self._image_entry(item.image, item.source, meta, caption=item.text, label=label, allow_urls=allow_urls)
                else:
                    yield self._text_entry(item.text or "", item.source, meta, label=label)

        self._consume(entries(), report, show_progress)
        return report

    def delete(self, source: str | Path | None = None, *, ids: Iterable[str] | None = None) -> int:
        """Delete every record of a source (a file path or the ``source`` of an item) and/or
        records by id; returns how many records went."""
        if ids is None and source is None:
            raise ConfigError("delete needs a source or ids")
        id_list = list(ids) if ids is not None else None
        names: list[str] = []
        if source is not None:
            names = [str(source)]
            if not is_url(str(source)) and "://" not in str(source):
                resolved = str(Path(source).expanduser().resolve())
                if resolved != names[0]:
                    names.append(resolved)
        removed = 0
        for store in self.stores():
            if id_list is not None:
                removed += store.delete(ids=id_list)
            if names:
                where = {"source": names[0]} if len(names) == 1 else {"source": {"$in": names}}
                removed += store.delete(where=where)
        return removed

    def _delete_missing(self, root: Path, seen: set[str], recursive: bool) -> int:
        removed = 0
        for store in self.stores():
            gone = []
            for id_, meta in store.iter_metadata():
                source = str(meta.get("source", ""))
                if not source or source in seen or is_url(source):
                    continue
                path = Path(source)
                inside = path.parent == root if not recursive else root in path.parents
                if inside and not path.exists():
                    gone.append(id_)
            removed += store.delete(ids=gone) if gone else 0
        return removed

    # reading and hashing: no decoding, no embedding yet -----------------------------------
    def _image_entry(
        self, image: Any, source: str | None, meta: dict[str, Any], *, caption: str | None, label: str,
        allow_urls: bool = False,
    ) -> _Entry | Skipped:
        try:
            if hasattr(image, "getpixel"):  # a PIL image: hash its pixels
                loaded = load_image_with_hash(image, max_pixels=self.max_pixels)
                payload, digest, origin = loaded.image, loaded.sha256, None
            else:
                payload, origin = read_image_bytes(image, allow_urls=allow_urls)
                digest = content_hash(payload)
                if not payload:
                    raise MediaError(f"{label}: empty image data (0 bytes)")
        except MediaError as exc:
            return Skipped(label, str(exc))
        source = source or origin
        record = {**meta, "modality": "image", "sha256": digest}
        if source:
            record.update(source=source, file_name=_file_name(source))
        return _Entry(label, source, "image", [_record_id("image", source, digest)], [record], [caption], [payload])

    def _text_file_entry(self, path: Path, meta: dict[str, Any]) -> _Entry | Skipped:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            return Skipped(str(path), f"cannot read: {exc.strerror or exc}")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            return Skipped(str(path), f"not UTF-8 text ({exc.reason} at byte {exc.start})")
        return self._text_entry(text, str(path), meta, label=str(path))

    def _text_entry(self, text: str, source: str | None, meta: dict[str, Any], *, label: str) -> _Entry | Skipped:
        if not isinstance(text, str):
            return Skipped(label, f"text must be a string, got {type(text).__name__}")
        if not text.strip():
            return Skipped(label, "empty text")
        chunks = [c for c in self._splitter().split_text(text) if c.strip()]
        digest = content_hash(text)
        ids = [_record_id("text", source, content_hash(chunk), i) for i, chunk in enumerate(chunks)]
        records = [{**meta, "modality": "text", "sha256": digest, "chunk": i} for i in range(len(chunks))]
        if source:
            for record in records:
                record.update(source=source, file_name=_file_name(source))
        return _Entry(label, source, "text", ids, records, list(chunks), list(chunks))

    def _splitter(self) -> Any:
        if self._splitter_instance is None:
            from llama_index.core.node_parser import SentenceSplitter

            self._splitter_instance = SentenceSplitter(chunk_size=self.chunk_size, chunk_overlap=self.chunk_overlap)
        return self._splitter_instance

    # windows: existence check, decode, embed, upsert ----------------------------------------
    def _consume(self, entries: Iterable[_Entry | Skipped | None], report: IngestReport, show_progress: bool | None) -> None:
        from tqdm.auto import tqdm

        window: list[_Entry] = []
        sources: set[str] = set()
        progress = tqdm(desc="ingesting", unit="file", disable=None if show_progress is None else not show_progress)
        try:
            for entry in entries:
                progress.update(1)
                if isinstance(entry, Skipped):
                    self._skip(report, entry)
                    continue
                if entry is None:
                    continue
                if entry.source is not None and entry.source in sources:  # same source twice: keep order
                    self._process(window, report)
                    window, sources = [], set()
                window.append(entry)
                if entry.source is not None:
                    sources.add(entry.source)
                if len(window) >= self.batch_size:
                    self._process(window, report)
                    window, sources = [], set()
            self._process(window, report)
        finally:
            progress.close()

    @staticmethod
    def _skip(report: IngestReport, skipped: Skipped) -> None:
        logger.warning("skipped %s: %s", skipped.source, skipped.reason)
        report.skipped.append(skipped)

    def _process(self, window: list[_Entry], report: IngestReport) -> None:
        for modality in ("image", "text"):
            entries = [e for e in window if e.modality == modality]
            if not entries:
                continue
            store = self.image_store if modality == "image" else self.text_store
            todo = self._changed(store, entries, report)
            if modality == "image":
                todo = self._decode(todo, report)
            self._embed_and_store(store, modality, todo, report)

    def _changed(self, store: ChromaStore, entries: list[_Entry], report: IngestReport) -> list[_Entry]:
        """Entries whose records are not all stored yet; unchanged ones are counted and dropped."""
        by_source = store.ids_by_source([e.source for e in entries if e.source is not None])
        sourceless = [i for e in entries if e.source is None for i in e.ids]
        present = store.existing(sourceless) if sourceless else set()
        todo = []
        for entry in entries:
            stored = by_source[entry.source] if entry.source is not None else present & set(entry.ids)
            if stored == set(entry.ids):
                report.unchanged += 1
                continue
            entry.stale = stored - set(entry.ids)
            entry.updated = bool(entry.stale)
            todo.append(entry)
        return todo

    def _decode(self, entries: list[_Entry], report: IngestReport) -> list[_Entry]:
        good = []
        for entry in entries:
            payload = entry.payloads[0]
            if isinstance(payload, (bytes, bytearray)):
                try:
                    entry.payloads = [decode_image(bytes(payload), max_pixels=self.max_pixels, origin=entry.label)]
                except MediaError as exc:
                    self._skip(report, Skipped(entry.label, str(exc)))
                    continue
            good.append(entry)
        return good

    def _embed_and_store(self, store: ChromaStore, modality: str, entries: list[_Entry], report: IngestReport) -> None:
        if not entries:
            return
        payloads = [p for e in entries for p in e.payloads]
        vectors = self._embed(modality, payloads)
        kept: list[tuple[_Entry, list[Any]]] = []
        offset = 0
        for entry in entries:
            rows = vectors[offset : offset + len(entry.payloads)]
            offset += len(entry.payloads)
            failure = next((r for r in rows if isinstance(r, Exception)), None)
            if failure is not None:
                self._skip(report, Skipped(entry.label, f"embedding failed: {type(failure).__name__}: {failure}"))
            else:
                kept.append((entry, rows))
        for entry, _ in kept:
            entry.payloads = []  # release decoded images before the next window
        if not kept:
            return
        import numpy as np

        store.upsert(
            [i for e, _ in kept for i in e.ids],
            np.stack([row for _, rows in kept for row in rows]),
            [m for e, _ in kept for m in e.metadatas],
            [d for e, _ in kept for d in e.documents],
        )
        report.records += sum(len(e.ids) for e, _ in kept)
        stale = sorted(i for e, _ in kept for i in e.stale)
        if stale:
            store.delete(ids=stale)
        for entry, _ in kept:
            if entry.updated:
                report.updated += 1
            else:
                report.added += 1

    def _embed(self, modality: str, payloads: list[Any]) -> list[Any]:
        """One vector per payload, in batches of ``batch_size``; if a batch fails, its inputs are
        retried one by one and a failing input yields its exception (the rest are kept).
        A :class:`ModelError` or :class:`ConfigError` (the model, not the input) propagates."""
        embed = self.image_embedder.embed_images if modality == "image" else self.text_space_embedder.embed_texts
        out: list[Any] = []
        for start in range(0, len(payloads), self.batch_size):
            batch = payloads[start : start + self.batch_size]
            try:
                out.extend(self._checked(embed(batch, batch_size=self.batch_size, show_progress=False), len(batch)))
                continue
            except (ModelError, ConfigError):
                raise
            except Exception as exc:  # noqa: BLE001 - find the input that caused it
                if len(batch) == 1:
                    out.append(exc)
                    continue
                logger.info("embedding a batch of %d failed (%s); retrying one by one", len(batch), exc)
            for payload in batch:
                try:
                    out.extend(self._checked(embed([payload], batch_size=1, show_progress=False), 1))
                except (ModelError, ConfigError):
                    raise
                except Exception as exc:  # noqa: BLE001
                    out.append(exc)
        return out

    @staticmethod
    def _checked(vectors: Any, n: int) -> Any:
        """``vectors`` if it is an (n, d) array, else a :class:`ModelError` (a broken embedder)."""
        shape = getattr(vectors, "shape", None)
        if shape is None or len(shape) != 2 or shape[0] != n:
            raise ModelError(f"the embedder returned {shape if shape is not None else type(vectors).__name__} for {n} inputs")
        return vectors


def _file_name(source: str) -> str:
    return source.rstrip("/").rsplit("/", 1)[-1] if is_url(source) or "://" in source else Path(source).name


__all__ = ["IngestReport", "MultimodalIndex", "Skipped", "TEXT_SUFFIXES"]
