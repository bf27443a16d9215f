"""Ingest folders or items into Chroma: walk, chunk, embed in batches, upsert idempotently.

Record ids derive from the source and the sha256 of the content, so re-ingesting an unchanged
file embeds nothing, a changed file replaces its old records, and files that vanished can be
removed. Bad files are skipped and reported with a reason; they never abort a run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, MediaError
from .media import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, content_hash, decode_image, load_image_with_hash, read_image_bytes
from .store import ChromaStore, flatten_metadata, make_client
from .types import Item

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from .embedders import Embedder

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = frozenset({".txt", ".md"})


@dataclass(frozen=True)
class Skipped:
    source: str
    reason: str


@dataclass
class IngestReport:
    """What an ingest run did. ``skipped`` lists every bad input with the reason."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    ignored: int = 0
    records: int = 0
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.skipped

    def summary(self) -> str:
        text = (
            f"added {self.added}, updated {self.updated}, unchanged {self.unchanged}, deleted {self.deleted}, "
            f"skipped {len(self.skipped)}, ignored {self.ignored} (unsupported types); {self.records} records written"
        )
        return text + "".join(f"\n  skipped {s.source}: {s.reason}" for s in self.skipped)


@dataclass
class _Pending:
    """One source's records waiting for embedding."""

    source: str | None
    ids: list[str]
    metadatas: list[dict[str, Any]]
    documents: list[str | None]
    payloads: list[Any]  # decoded images or text chunks
    store: ChromaStore
    modality: str


def _record_id(modality: str, source: str | None, digest: str, part: int = 0) -> str:
    return content_hash(f"{modality}\0{source or ''}\0{digest}\0{part}")[:40]


class MultimodalIndex:
    """Images and texts in Chroma, embedded with a CLIP-style model (and optionally a text model).

    Images live in the collection ``<collection>``, texts in ``<collection>-text`` (one collection
    per modality, so per-modality top-k needs no metadata filter). With ``text_embedder=None``
    texts are embedded by the image embedder's text tower: one space, one cosine scale. With a
    separate text embedder the text scores are on another scale (see :mod:`.retrieval`).
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
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.image_embedder = image_embedder
        self.text_embedder = text_embedder
        self.collection = collection
        # CLIP text towers see 77 tokens: keep chunks short in the shared space.
        self.chunk_size = chunk_size or (256 if text_embedder is not None else 60)
        self.chunk_overlap = min(chunk_overlap, self.chunk_size // 2)
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self._client = client if client is not None else make_client(path, host=host, port=port, telemetry=telemetry)
        self._image_store: ChromaStore | None = None
        self._text_store: ChromaStore | None = None

    # stores --------------------------------------------------------------------------------
    @property
    def shared_space(self) -> bool:
        """True when texts and images are embedded in one space (scores comparable)."""
        return self.text_embedder is None

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

    @property
    def text_space_embedder(self) -> Embedder:
        return self.text_embedder or self.image_embedder

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
        """Ingest images (jpg/png/webp/gif/bmp/tiff) and texts (txt/md) under ``folder``.

        Files are streamed: at most ``batch_size`` decoded images are held at once. With
        ``delete_missing`` records whose file under ``folder`` no longer exists are deleted.
        """
        root = Path(folder).expanduser().resolve()
        if not root.is_dir():
            raise ConfigError(f"{folder} is not a directory")
        report = IngestReport()
        seen: set[str] = set()

        def files() -> Iterator[Path]:
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
                for name in sorted(filenames):
                    if name.startswith("."):
                        continue
                    path = Path(dirpath) / name
                    suffix = path.suffix.lower()
                    if suffix in IMAGE_SUFFIXES or suffix in TEXT_SUFFIXES:
                        seen.add(str(path))
                        yield path
                    else:
                        report.ignored += 1

        def sources() -> Iterator[_Pending | Skipped | None]:
            for path in files():
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    yield self._prepare_image_file(path, metadata)
                else:
                    yield self._prepare_text_file(path, metadata)

        self._consume(sources(), report, show_progress)
        if delete_missing:
            prefix = str(root) + os.sep
            for store in self.stores():
                gone = [
                    id_ for id_, meta in store.iter_metadata()
                    if str(meta.get("source", "")).startswith(prefix) and meta["source"] not in seen
                ]
                report.deleted += store.delete(ids=gone)
        logger.info("ingest %s: %s", root, report.summary())
        return report

    def ingest(self, items: Iterable[Item], *, show_progress: bool | None = None) -> IngestReport:
        """Ingest :class:`Item` objects (text, image, or an image with its caption)."""
        report = IngestReport()

        def sources() -> Iterator[_Pending | Skipped | None]:
            for number, item in enumerate(items):
                if not isinstance(item, Item):
                    yield Skipped(f"item #{number}", f"not an Item: {type(item).__name__}")
                elif item.image is not None:
                    yield self._prepare_image(item.image, item.source, item.metadata, caption=item.text, label=f"item #{number}")
                else:
                    yield self._prepare_text(item.text or "", item.source, item.metadata, label=f"item #{number}")

        self._consume(sources(), report, show_progress)
        return report

    def delete(self, *, ids: Iterable[str] | None = None, source: str | Path | None = None) -> int:
        """Delete records by id, or every record of a source file; returns how many went."""
        if ids is None and source is None:
            raise ConfigError("delete needs ids or a source")
        removed = 0
        for store in self.stores():
            if ids is not None:
                removed += store.delete(ids=list(ids))
            if source is not None:
                removed += store.delete(where={"source": str(Path(source).expanduser().resolve())})
        return removed

    # preparation: read, hash, validate — no embedding yet ---------------------------------
    def _prepare_image_file(self, path: Path, metadata: Mapping[str, Any] | None) -> _Pending | Skipped | None:
        return self._prepare_image(path, str(path), metadata or {}, caption=None, label=str(path))

    def _prepare_image(
        self, image: Any, source: str | None, metadata: Mapping[str, Any], *, caption: str | None, label: str
    ) -> _Pending | Skipped | None:
        try:
            from PIL import Image

            if isinstance(image, Image.Image):
                loaded = load_image_with_hash(image, max_pixels=self.max_pixels)
                decoded, digest, origin = loaded.image, loaded.sha256, None
            else:
                data, origin = read_image_bytes(image)
                digest = content_hash(data)
                decoded = None
            source = source or origin
            record_id = _record_id("image", source, digest)
            store = self.image_store
            if self._unchanged(store, source, [record_id]):
                return None
            if decoded is None:
                decoded = decode_image(data, max_pixels=self.max_pixels, origin=label)
            meta = {**flatten_metadata(metadata), "modality": "image", "sha256": digest}
        except (MediaError, ConfigError) as exc:
            return Skipped(label, str(exc))
        if source:
            meta.update(source=source, file_name=Path(source).name)
        return _Pending(source, [record_id], [meta], [caption], [decoded], store, "image")

    def _prepare_text_file(self, path: Path, metadata: Mapping[str, Any] | None) -> _Pending | Skipped | None:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            return Skipped(str(path), f"cannot read: {exc}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Skipped(str(path), f"not UTF-8 text ({exc.reason} at byte {exc.start})")
        return self._prepare_text(text, str(path), metadata or {}, label=str(path))

    def _prepare_text(self, text: str, source: str | None, metadata: Mapping[str, Any], *, label: str) -> _Pending | Skipped | None:
        if not text.strip():
            return Skipped(label, "empty text")
        try:
            user_meta = flatten_metadata(metadata)
        except ConfigError as exc:
            return Skipped(label, str(exc))
        chunks = self._splitter().split_text(text)
        digest = content_hash(text)
        ids = [_record_id("text", source, digest, i) for i in range(len(chunks))]
        store = self.text_store
        if self._unchanged(store, source, ids):
            return None
        metas = [{**user_meta, "modality": "text", "sha256": digest, "chunk": i} for i in range(len(chunks))]
        if source:
            for meta in metas:
                meta.update(source=source, file_name=Path(source).name)
        return _Pending(source, ids, metas, list(chunks), list(chunks), store, "text")

    def _splitter(self) -> Any:
        from llama_index.core.node_parser import SentenceSplitter

        return SentenceSplitter(chunk_size=self.chunk_size, chunk_overlap=self.chunk_overlap)

    @staticmethod
    def _unchanged(store: ChromaStore, source: str | None, ids: list[str]) -> bool:
        if len(store.existing(ids)) != len(ids):
            return False
        if source is None:
            return True
        return set(store.ids({"source": source})) == set(ids)

    # embedding + upsert in batches -------------------------------------------------------
    def _consume(self, prepared: Iterable[_Pending | Skipped | None], report: IngestReport, show_progress: bool | None) -> None:
        from tqdm.auto import tqdm

        batches: dict[tuple[int, str], list[_Pending]] = {}
        progress = tqdm(desc="ingesting", unit="file", disable=None if show_progress is None else not show_progress)
        try:
            for entry in prepared:
                progress.update(1)
                if entry is None:
                    report.unchanged += 1
                    continue
                if isinstance(entry, Skipped):
                    logger.warning("skipped %s: %s", entry.source, entry.reason)
                    report.skipped.append(entry)
                    continue
                key = (id(entry.store), entry.modality)
                batch = batches.setdefault(key, [])
                batch.append(entry)
                if sum(len(p.ids) for p in batch) >= self.batch_size:
                    self._flush(batches.pop(key), report)
            for batch in batches.values():
                self._flush(batch, report)
        finally:
            progress.close()

    def _flush(self, batch: list[_Pending], report: IngestReport) -> None:
        store, modality = batch[0].store, batch[0].modality
        payloads = [payload for pending in batch for payload in pending.payloads]
        if modality == "image":
            vectors = self.image_embedder.embed_images(payloads, batch_size=self.batch_size, show_progress=False)
        else:
            vectors = self.text_space_embedder.embed_texts(payloads, batch_size=self.batch_size, show_progress=False)
        store.upsert(
            [i for p in batch for i in p.ids],
            vectors,
            [m for p in batch for m in p.metadatas],
            [d for p in batch for d in p.documents],
        )
        report.records += len(payloads)
        for pending in batch:
            stale = set(store.ids({"source": pending.source})) - set(pending.ids) if pending.source else set()
            if stale:
                store.delete(ids=sorted(stale))
                report.updated += 1
            else:
                report.added += 1


__all__ = ["IngestReport", "MultimodalIndex", "Skipped", "TEXT_SUFFIXES"]
