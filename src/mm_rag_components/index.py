"""Ingest folders or items into Chroma: walk, chunk, embed in batches, upsert idempotently.
PDFs become pages (:mod:`~mm_rag_components.pages`).

Record ids derive from the source and the sha256 of the content, so re-ingesting an unchanged
file embeds nothing, a changed file replaces its old records, and files that vanished can be
removed. Ingest never aborts on a bad input: it is skipped with a reason (or repaired, with a
note) and the good ones are kept. Only a broken model or store stops a run.

The pipeline streams: files are walked lazily and handled in windows of ``batch_size`` sources.
For each window the store is asked once which records exist; only new or changed images are
decoded, and at most one window of decoded images is alive at a time.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .chroma_client import make_client, writer_lock
from .chunking import DEFAULT_MAX_CHUNKS_PER_FILE, GuardedSplitter, PlainSplitter, TextSplitter, default_splitter
from .entries import EntryReader, item_label
from .errors import ConfigError
from .files import TEXT_SUFFIXES, FoundFile, media_kind, walk_media
from .hnsw import check_hnsw
from .ingest import Entry, Ingester, IngestReport, Note, Skipped, guarded, skip
from .media import DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_PIXELS, DEFAULT_MAX_TEXT_BYTES
from .metadata import clean_metadata, flatten_metadata
from .pages import DocumentLedger, PageImages, PageReader
from .pdf import DEFAULT_MAX_PAGES_PER_FILE, DEFAULT_PAGE_DPI
from .removal import delete_records, delete_vanished, source_names
from .store import ChromaStore
from .types import Item
from .unicode import clean_path
from .validate import boolean, integer, number, positive_int

if TYPE_CHECKING:  # pragma: no cover
    from .embedders import Embedder

logger = logging.getLogger(__name__)


class MultimodalIndex:
    """Images and texts in Chroma, embedded with a CLIP-style model (and optionally a text model).

    Args: ``path`` of the embedded Chroma database, or ``host``/``port`` of a Chroma server, or a
    chromadb ``client``; ``image_embedder`` (an :class:`~mm_rag_components.embedders.Embedder` with
    the ``image`` modality); ``text_embedder`` (``None``: texts go through the image embedder's
    text tower, one shared space); ``collection``; ``chunk_size`` / ``chunk_overlap`` (tokens;
    default 60 in the shared CLIP space, whose text tower sees 77 tokens, else 256); ``splitter``
    (any :class:`~mm_rag_components.chunking.TextSplitter`, default LlamaIndex's
    ``SentenceSplitter``; always behind a :class:`~mm_rag_components.chunking.GuardedSplitter`
    that falls back to a plain splitter, noted); ``batch_size`` (sources per window, inputs per
    embedding call); ``max_pixels``; ``max_text_bytes`` / ``max_image_bytes`` (larger files and
    items are skipped; 8 MiB / 64 MiB); ``max_chunks_per_file`` (10,000; noted when cut);
    ``follow_external_symlinks`` (False: a symlink leaving the ingested folder is skipped);
    ``hnsw`` (Chroma HNSW settings for both collections, e.g. ``{"ef_search": 200}``; see
    :class:`~mm_rag_components.store.ChromaStore`).

    PDFs are ingested page by page (needs the ``[pdf]`` extra): each page's rendering at
    ``page_dpi`` (lowered to stay within ``max_pixels``) in the image collection, stored once as a
    JPEG named by its pixels' sha256 in ``page_dir`` (default: ``<path>-pages/<collection>`` beside
    the database; required for a server), and its text layer, chunked, in the text collection —
    every record with the document's ``title``, ``page``, ``page_count`` and one ``page_id``.
    ``page_images=False`` reads PDFs as text only; ``max_pages_per_file`` (10,000) caps the pages
    read from one PDF (noted).

    Images live in ``<collection>``, texts in ``<collection>-text``. Ingest creates both; reading
    never does: a query on a missing collection raises ``StoreError`` ("ingest first"), on an
    empty one it returns nothing and logs a warning.

    Several processes: an embedded database takes one writing process at a time; a process
    reading it may see part of another's write, and concurrent writers can lose data. Ingest
    holds a lock file in the database folder and logs a warning when another writer holds it.
    To share an index, run a Chroma server (``chroma run --path DIR``) and use
    ``MultimodalIndex(None, host=..., port=...)``.
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
        splitter: TextSplitter | None = None,
        batch_size: int = 32,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        max_chunks_per_file: int = DEFAULT_MAX_CHUNKS_PER_FILE,
        follow_external_symlinks: bool = False,
        telemetry: bool = False,
        hnsw: Mapping[str, Any] | None = None,
        page_dpi: float = DEFAULT_PAGE_DPI,
        max_pages_per_file: int = DEFAULT_MAX_PAGES_PER_FILE,
        page_images: bool = True,
        page_dir: str | Path | None = None,
    ) -> None:
        if "image" not in image_embedder.modalities:
            raise ConfigError(f"image_embedder {image_embedder.name!r} cannot embed images")
        if text_embedder is not None and "text" not in text_embedder.modalities:
            raise ConfigError(f"text_embedder {text_embedder.name!r} cannot embed text")
        if splitter is not None and not callable(getattr(splitter, "split_text", None)):
            raise ConfigError(f"splitter must have a split_text(text) method, got {type(splitter).__name__}")
        self.image_embedder = image_embedder
        self.text_embedder = text_embedder
        self.collection = collection
        self.chunk_size = integer("chunk_size", chunk_size, minimum=8, optional=True) or (256 if text_embedder is not None else 60)
        self.chunk_overlap = min(integer("chunk_overlap", chunk_overlap, minimum=0), self.chunk_size // 2)
        self.batch_size = positive_int("batch_size", batch_size)
        self.max_pixels = positive_int("max_pixels", max_pixels, optional=True)
        self.max_text_bytes = positive_int("max_text_bytes", max_text_bytes)
        self.max_image_bytes = positive_int("max_image_bytes", max_image_bytes)
        self.max_chunks_per_file = positive_int("max_chunks_per_file", max_chunks_per_file)
        self.follow_external_symlinks = boolean("follow_external_symlinks", follow_external_symlinks)
        self.hnsw = check_hnsw(hnsw) or None
        self.page_dpi = number("page_dpi", page_dpi, minimum=1.0, maximum=1200.0)
        self.max_pages_per_file = positive_int("max_pages_per_file", max_pages_per_file)
        self.page_images = boolean("page_images", page_images)
        if page_dir is None and path is not None and host is None and client is None:
            page_dir = Path(f"{Path(path).expanduser().resolve()}-pages") / collection
        self.page_dir = None if page_dir is None else str(Path(page_dir).expanduser().resolve())
        self._primary_splitter = splitter
        self._guard: GuardedSplitter | None = None
        self.path = None if path is None else str(path)
        self.host, self.port, self.telemetry = host, port, telemetry
        self._own_client = client is None
        self._client = client if client is not None else make_client(path, host=host, port=port, telemetry=telemetry)
        self._image_store: ChromaStore | None = None
        self._text_store: ChromaStore | None = None

    def __repr__(self) -> str:
        text = f", text_embedder={self.text_embedder.name!r}" if self.text_embedder is not None else ""
        return f"MultimodalIndex(collection={self.collection!r}, image_embedder={self.image_embedder.name!r}{text})"

    def config(self) -> dict[str, Any]:
        """Constructor arguments (see :mod:`mm_rag_components.config`); an index opened on a
        ready chromadb client, or with a custom splitter, cannot be saved (they are not data)."""
        if not self._own_client:
            raise ConfigError("an index opened on a client object cannot be saved; open it with path= or host=")
        if self._primary_splitter is not None:
            raise ConfigError("an index with a custom splitter cannot be saved; rebuild it with splitter=... yourself")
        return {
            "path": None if self.host else self.path, "host": self.host, "port": self.port,
            "image_embedder": self.image_embedder, "text_embedder": self.text_embedder,
            "collection": self.collection, "chunk_size": self.chunk_size, "chunk_overlap": self.chunk_overlap,
            "batch_size": self.batch_size, "max_pixels": self.max_pixels, "max_text_bytes": self.max_text_bytes,
            "max_image_bytes": self.max_image_bytes, "max_chunks_per_file": self.max_chunks_per_file,
            "follow_external_symlinks": self.follow_external_symlinks, "telemetry": self.telemetry,
            "hnsw": None if self.hnsw is None else dict(self.hnsw), "page_dpi": self.page_dpi,
            "max_pages_per_file": self.max_pages_per_file, "page_images": self.page_images, "page_dir": self.page_dir,
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
        """The image collection (opened for reading: not created until ingest writes)."""
        if self._image_store is None:
            self._image_store = self._open(self.collection, self.image_embedder)
        return self._image_store

    @property
    def text_store(self) -> ChromaStore:
        """The text collection (opened for reading: not created until ingest writes)."""
        if self._text_store is None:
            self._text_store = self._open(f"{self.collection}-text", self.text_space_embedder)
        return self._text_store

    def _open(self, name: str, embedder: Embedder) -> ChromaStore:
        return ChromaStore(
            self._client, name, embedder_name=embedder.name, dimension=embedder.dimension, create_on_open=False, hnsw=self.hnsw
        )

    def stores(self) -> list[ChromaStore]:
        return [self.image_store, self.text_store]

    def count(self) -> dict[str, int]:
        """Records per modality (0 for a collection not created yet)."""
        return {"image": self.image_store.count(), "text": self.text_store.count()}

    @property
    def splitter(self) -> GuardedSplitter:
        """The guarded text splitter (built on first use; the default loads LlamaIndex then).
        A :class:`GuardedSplitter` passed as ``splitter`` is used as it is."""
        if self._guard is None:
            primary = self._primary_splitter or default_splitter(self.chunk_size, self.chunk_overlap)
            fallback = PlainSplitter(self.chunk_size, self.chunk_overlap)
            self._guard = primary if isinstance(primary, GuardedSplitter) else GuardedSplitter(
                primary, fallback=fallback, max_chunks=self.max_chunks_per_file)
        return self._guard

    # ingest --------------------------------------------------------------------------------
    def ingest_folder(
        self,
        folder: str | Path,
        *,
        recursive: bool = True,
        delete_missing: bool = False,
        metadata: Mapping[str, Any] | None = None,
        show_progress: bool | None = None,
        precompute: Any = None,
    ) -> IngestReport:
        """Ingest images (jpg/jpeg/png/webp/gif/bmp/tif/tiff), texts (txt/md) and PDFs (pages) under ``folder``.

        Hidden files and folders are left out, symlinked folders are not descended, other types
        are counted as ``ignored``. Only regular files are read (a FIFO or device is skipped),
        up to ``max_text_bytes`` / ``max_image_bytes``. With ``delete_missing`` the records of
        files under ``folder`` (only its top level when not ``recursive``) that no longer exist
        are deleted. ``metadata`` goes on every record. ``precompute``: a reranker scorer (e.g.
        ``TransformersScorer(..., vision_cache_dir=DIR)``) whose image features are computed for
        every image read, unchanged ones included, so its first query after a restart is warm.
        """
        try:
            root = Path(folder).expanduser().resolve()
        except (OSError, ValueError, TypeError, RuntimeError) as exc:  # NUL byte, unknown ~user …
            raise ConfigError(f"{folder!r:.200} is not a usable folder path: {exc}") from exc
        if not root.is_dir():
            raise ConfigError(f"{clean_path(root)[0]} is not a directory")
        report = IngestReport()
        user_meta = _user_metadata(metadata, root, report)
        seen: set[str] = set()

        def walk_error(exc: OSError) -> None:
            where = clean_path(exc.filename or root)[0]
            skip(report, Skipped(where, f"cannot list folder: {exc.strerror or exc}"))

        def walk(on_error: Callable[[OSError], None] | None = None, follow: bool = False) -> Iterator[FoundFile]:
            follow = follow or self.follow_external_symlinks
            return walk_media(root, recursive=recursive, follow_external_symlinks=follow, on_error=on_error)

        def entries(pages: PageReader) -> Iterator[Entry | Skipped]:
            for found in walk(walk_error):
                if found.kind == "other":
                    report.ignored += 1
                    continue
                source, renamed = clean_path(found.path)
                seen.add(source)
                yield from self._file_entries(found, source, renamed, user_meta, pages)

        with _precompute(precompute, show_progress) as hook, writer_lock(self._client):
            self._run(hook, entries, report, show_progress, lambda: sum(f.kind != "other" for f in walk(follow=True)))
            if delete_missing:
                report.deleted += self._delete_missing(root, seen, recursive)
        logger.info("ingest %s: %s", root, report.summary())
        return report

    def ingest(
        self, items: Iterable[Item], *, allow_urls: bool = False, show_progress: bool | None = None, precompute: Any = None,
    ) -> IngestReport:
        """Ingest :class:`Item` objects: a text, an image, or an image with its caption.

        An image item stores its caption as the record's document (the image is what is
        embedded). Items with a ``source`` replace that source's older records. Identical items
        (same record id) are ingested once and counted in ``duplicates``; a bad item is skipped
        with its reason and never costs the others their place. ``precompute``: as in
        :meth:`ingest_folder`.
        """
        report = IngestReport()

        def entries() -> Iterator[Entry | Skipped]:
            for position, item in enumerate(items):
                label = item_label(position, item)
                yield guarded(label, lambda: self._reader.item_entry(item, label, allow_urls))

        with _precompute(precompute, show_progress) as hook, writer_lock(self._client):
            self._ingester(hook).run(entries(), report, show_progress, lambda: len(items) if isinstance(items, Sized) else None)
        return report

    def ingest_paths(
        self,
        paths: Iterable[str | Path],
        *,
        delete_missing: bool = False,
        metadata: Mapping[str, Any] | None = None,
        show_progress: bool | None = None,
        precompute: Any = None,
    ) -> IngestReport:
        """Ingest folders (as :meth:`ingest_folder`) and single files, in order, into one report.

        A path that does not exist is skipped with its reason; a file of a type that is not
        ingested is counted as ``ignored``. Single files are read exactly as a folder's files
        are (same limits, same record ids: ingesting a file and then its folder adds nothing).
        """
        if isinstance(paths, (str, Path)) or not isinstance(paths, Iterable):
            raise ConfigError(f"paths must be a list of paths, got {type(paths).__name__}")
        report = IngestReport()
        files: list[Path] = []
        options = {"metadata": metadata, "show_progress": show_progress, "precompute": precompute}
        for given in paths:
            if not isinstance(given, (str, Path)):
                raise ConfigError(f"paths must be paths, got {type(given).__name__}")
            path = Path(given).expanduser()
            if path.is_dir():
                report.add(self.ingest_folder(path, delete_missing=delete_missing, **options))
            elif not path.exists():
                skip(report, Skipped(clean_path(path)[0], "no such file or folder"))
            elif media_kind(path) == "other":
                report.ignored += 1
            else:
                files.append(path.resolve())
        if files:
            report.add(self._ingest_files(files, metadata, show_progress, precompute))
        return report

    def _ingest_files(
        self, files: list[Path], metadata: Mapping[str, Any] | None, show_progress: bool | None, precompute: Any,
    ) -> IngestReport:
        report = IngestReport()
        user_meta = _user_metadata(metadata, files[0], report)

        def entries(pages: PageReader) -> Iterator[Entry | Skipped]:
            for path in files:
                source, renamed = clean_path(path)
                yield from self._file_entries(FoundFile(path, media_kind(path)), source, renamed, user_meta, pages)

        with _precompute(precompute, show_progress) as hook, writer_lock(self._client):
            self._run(hook, entries, report, show_progress, lambda: len(files))
        return report

    def _file_entries(
        self, found: FoundFile, source: str, renamed: bool, meta: dict[str, Any], pages: PageReader,
    ) -> Iterator[Entry | Skipped]:
        if found.kind == "pdf":
            yield from pages.entries(found, source, renamed, meta)
        else:
            yield guarded(source, lambda: self._reader.file_entry(found, source, renamed, meta))

    def _run(
        self, hook: Any, entries: Callable[[PageReader], Iterator[Entry | Skipped]], report: IngestReport,
        show_progress: bool | None, total: Callable[[], int | None],
    ) -> None:
        """One ingest run over ``entries(page_reader)``, then its documents settled (see :mod:`.pages`)."""
        ledger = DocumentLedger()
        images = self._page_images if self.page_images else None
        problem = None if images or not self.page_images else (
            "PDF page images need a folder: pass page_dir=... (this index has no local path), or page_images=False")
        pages = PageReader(self._reader, self.page_dpi, self.max_pages_per_file, images, ledger, problem)
        self._ingester(hook, ledger).run(entries(pages), report, show_progress, total)
        ledger.finish(self.image_store, self.text_store, images, report)

    def warm_up(self) -> None:
        """Load the embedders now (they otherwise load on first use)."""
        for embedder in (self.image_embedder, self.text_embedder):
            warm = getattr(embedder, "warm_up", None)
            if callable(warm):
                warm()

    def _ingester(self, precompute: Any, documents: DocumentLedger | None = None) -> Ingester:
        return Ingester(
            image_store=self.image_store, text_store=self.text_store, image_embedder=self.image_embedder,
            text_embedder=self.text_space_embedder, batch_size=self.batch_size, max_pixels=self.max_pixels,
            precompute=precompute, documents=documents,
        )

    @property
    def _reader(self) -> EntryReader:
        return EntryReader(self.max_pixels, self.max_text_bytes, self.max_image_bytes, lambda: self.splitter)

    def delete(self, source: str | Path | None = None, *, ids: Iterable[str] | None = None) -> int:
        """Delete every record of a source (a file path, a PDF's pages, or the ``source`` of an
        item) and/or records by id, with page images no record names any more; returns how many
        records went."""
        if ids is None and source is None:
            raise ConfigError("delete needs a source or ids")
        names = source_names(source) if source is not None else []
        with writer_lock(self._client):
            return delete_records(self.image_store, self.text_store, self._page_images,
                                  names=names, ids=list(ids) if ids is not None else None)

    @property
    def _page_images(self) -> PageImages | None:
        return PageImages(Path(self.page_dir)) if self.page_dir else None

    def _delete_missing(self, root: Path, seen: set[str], recursive: bool) -> int:
        return delete_vanished(self.image_store, self.text_store, self._page_images, root, seen, recursive)


def _user_metadata(metadata: Mapping[str, Any] | None, where: Path, report: IngestReport) -> dict[str, Any]:
    """``metadata`` as every record stores it (bad metadata: a ``ConfigError``, before anything is
    read); a Unicode repair is noted on ``where``."""
    user_meta, repaired = clean_metadata(flatten_metadata(metadata or {}))
    if repaired:
        report.notes.append(Note(str(where), f"invalid Unicode replaced with U+FFFD in metadata {repaired}"))
    return user_meta


def _precompute(scorer: Any, show_progress: bool | None) -> Any:
    """A context giving the ingest hook that precomputes ``scorer``'s image features (or ``None``)."""
    if scorer is None:
        return contextlib.nullcontext()
    from .scoring.precompute import IngestPrecompute

    return IngestPrecompute(scorer, show_progress)


__all__ = ["IngestReport", "MultimodalIndex", "Note", "Skipped", "TEXT_SUFFIXES"]
