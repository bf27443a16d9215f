"""The ingest pipeline behind :class:`~mm_rag_components.index.MultimodalIndex`: what a run
reports, and how read inputs become stored records, one window at a time.

For each window (up to ``batch_size`` sources of each modality, so every embedding batch can be
full) the store is asked once which records exist; only new
or changed images are decoded (at most one window of decoded images is alive at a time); records
are checked before anything is embedded; a window the model or the store refuses is retried
input by input, so one bad input never costs the others their place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import ConfigError, MMRagError, ModelError, StoreError
from .media import content_hash, decode_image
from .unicode import clean_text
from .metadata import check_record
from .store import ChromaStore
from .types import SHA256

if TYPE_CHECKING:  # pragma: no cover
    from .embedders import Embedder

logger = logging.getLogger(__name__)


class Skipped(NamedTuple):
    """A bad input that was not indexed: ``(source, reason)``."""

    source: str
    reason: str


class Note(NamedTuple):
    """An input indexed with a caveat (text repaired, splitter fallback, chunks cut): ``(source, note)``."""

    source: str
    note: str


@dataclass
class IngestReport:
    """What an ingest run did, counted per source (file or item).

    ``records`` counts the records written (a text file gives one per chunk); ``ignored``
    counts files whose type is not ingested; ``duplicates`` counts inputs left out because an
    identical one (same record id) came earlier in the run, ``duplicate_chunks`` repeated chunks
    left out of a text (or already written by an identical sourceless item); ``skipped`` lists
    every bad input with the reason; ``notes`` every input indexed with a caveat.
    """

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    ignored: int = 0
    duplicates: int = 0
    duplicate_chunks: int = 0
    records: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was skipped."""
        return not self.skipped

    def add(self, other: IngestReport) -> IngestReport:
        """Add ``other``'s counts and lists (skipped inputs, notes) to this report; returns it."""
        for name, mine in vars(self).items():
            theirs = getattr(other, name)
            if isinstance(mine, list):
                mine.extend(theirs)
            else:
                setattr(self, name, mine + theirs)
        return self

    def summary(self) -> str:
        text = (
            f"added {self.added}, updated {self.updated}, unchanged {self.unchanged}, deleted {self.deleted}, "
            f"duplicates {self.duplicates}, skipped {len(self.skipped)}, ignored {self.ignored} (unsupported types); "
            f"{self.records} records written"
        ) + (f" ({self.duplicate_chunks} repeated chunks left out)" if self.duplicate_chunks else "")
        lines = [f"\n  skipped {s.source}: {s.reason}" for s in self.skipped]
        return text + "".join(lines + [f"\n  note {n.source}: {n.note}" for n in self.notes])


@dataclass
class Entry:
    """One source read and hashed, waiting for the existence check and (maybe) embedding.

    A page of a document (a PDF) is an entry with ``document`` set and no ``source``: it is
    checked by its record ids (the document's other pages are not its stale records), and its
    outcome goes to the Ingester's ``documents`` ledger, which counts the document once (see
    :class:`~mm_rag_components.pages.DocumentLedger`). ``progress``: how far it moves the
    progress bar (files; a document's first entry moves it by one, its others by zero).
    """

    label: str
    source: str | None
    modality: str
    ids: list[str]
    metadatas: list[dict[str, Any]]
    documents: list[str | None]
    #: texts: the chunks; images: one element, raw bytes or an already decoded PIL image
    payloads: list[Any]
    notes: list[str] = field(default_factory=list)
    duplicates: int = 0
    stale: set[str] = field(default_factory=set)
    updated: bool = False
    document: str | None = None
    progress: int = 1
    #: images: the bytes of the file a reader opens later, when the payload is not those bytes (a
    #: page's stored JPEG beside its lossless rendering): what reranker features are precomputed on
    stored: bytes | None = None

    def keep(self, rows: list[int]) -> None:
        for name in ("ids", "metadatas", "documents", "payloads"):
            values = getattr(self, name)
            setattr(self, name, [values[i] for i in rows])


def record_id(modality: str, source: str | None, digest: str, part: int = 0) -> str:
    return content_hash(f"{modality}\0{source or ''}\0{digest}\0{part}")[:40]


def short(text: str, limit: int = 500) -> str:
    text = clean_text(text)[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def guarded(label: str, build: Callable[[], Any]) -> Any:
    """``build()``, with any failure turned into a :class:`Skipped` of this one input."""
    try:
        return build()
    except MMRagError as exc:
        return Skipped(label, str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad input never stops the run; logged loudly
        logger.exception("unexpected error while reading %s", label)
        return Skipped(label, f"unexpected error: {type(exc).__name__}: {exc}")


def skip(report: IngestReport, skipped: Skipped) -> None:
    """Record (and log, at INFO: the run's warning counts them) an input that was not indexed;
    the reason does not repeat the source it is listed under."""
    source, reason = skipped
    if source:
        reason = reason.replace(f"{source}: ", "", 1)
    skipped = Skipped(short(source, 300), short(reason))
    logger.info("skipped %s: %s", skipped.source, skipped.reason)
    report.skipped.append(skipped)


class Ingester:
    """Stores :class:`Entry` objects into an image and a text collection, window by window.

    ``image_embedder`` embeds the images, ``text_embedder`` the texts (the same object in a
    shared CLIP space); ``batch_size`` is the window size (sources of one modality: a window
    holds at most that many images and that many texts) and the embedding batch;
    ``max_pixels`` bounds decoded images. ``precompute``: called with ``(sha256, raw bytes)`` of
    every image window (new, changed and unchanged images) before the store is asked; returns a
    problem to note or ``None`` (:class:`~mm_rag_components.scoring.precompute.IngestPrecompute`:
    reranker image features). ``documents``: told the outcome of every document page entry
    (``outcome(entry, "added" | "updated" | "unchanged")``) instead of the report's counts.
    """

    def __init__(
        self,
        *,
        image_store: ChromaStore,
        text_store: ChromaStore,
        image_embedder: Embedder,
        text_embedder: Embedder,
        batch_size: int,
        max_pixels: int | None,
        precompute: Callable[[list[tuple[str, Any]]], str | None] | None = None,
        documents: Any = None,
    ) -> None:
        self.stores = {"image": image_store, "text": text_store}
        self.embedders = {"image": image_embedder, "text": text_embedder}
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.precompute = precompute
        self.documents = documents

    def run(
        self, entries: Iterable[Entry | Skipped], report: IngestReport, show_progress: bool | None,
        total: Callable[[], int | None],
    ) -> None:
        """Create both collections, then process ``entries`` in windows, with a progress bar
        whose ``total()`` (counted cheaply up front) is asked only when the bar shows."""
        from .progress import progress_bar

        for store in self.stores.values():
            store.ensure()
        before = len(report.skipped)
        with progress_bar(show_progress, desc="ingesting", unit="file") as progress:
            if not progress.disable:
                progress.total = total()
                progress.refresh()
            self._windows(entries, report, progress)
        if len(report.skipped) > before:
            logger.warning("%d inputs were skipped; the ingest report lists each with its reason (report.skipped, "
                           "report.summary())", len(report.skipped) - before)

    def _windows(self, entries: Iterable[Entry | Skipped], report: IngestReport, progress: Any) -> None:
        window: list[Entry] = []
        seen: set[str] = set()  # record ids taken in this run
        for entry in entries:
            progress.update(getattr(entry, "progress", 1))
            if isinstance(entry, Skipped):
                skip(report, entry)
                continue
            for note in entry.notes:
                logger.info("note %s: %s", entry.label, note)
                report.notes.append(Note(entry.label, short(note)))
            report.duplicate_chunks += entry.duplicates
            if not self._fresh(entry, seen, report):
                continue
            if entry.source is not None and any(e.source == entry.source for e in window):
                self._process(window, report)  # same source twice: keep order
                window = []
            window.append(entry)
            if sum(e.modality == entry.modality for e in window) >= self.batch_size:
                self._process(window, report)
                window = []
        self._process(window, report)

    @staticmethod
    def _fresh(entry: Entry, seen: set[str], report: IngestReport) -> bool:
        """False for an input identical to an earlier one in this run (counted as a duplicate);
        a sourceless entry loses the records an earlier one already wrote (shared chunks)."""
        rows = [i for i, id_ in enumerate(entry.ids) if id_ not in seen]
        if not rows:
            logger.info("duplicate of an earlier input in this run: %s", entry.label)
            report.duplicates += 1
            return False
        if len(rows) < len(entry.ids) and entry.source is None:
            report.duplicate_chunks += len(entry.ids) - len(rows)
            entry.keep(rows)
        seen.update(entry.ids)
        return True

    def _process(self, window: list[Entry], report: IngestReport) -> None:
        for modality in ("image", "text"):
            entries = [e for e in window if e.modality == modality]
            if not entries:
                continue
            store = self.stores[modality]
            if modality == "image" and self.precompute is not None:
                problem = self.precompute([(e.metadatas[0][SHA256], e.stored or e.payloads[0]) for e in entries])
                if problem:
                    report.notes.extend(Note(e.label, short(problem)) for e in entries)
            todo = self._changed(store, entries, report)
            if modality == "image":
                todo = self._decode(todo, report)
            self._embed_and_store(store, modality, todo, report)

    def _changed(self, store: ChromaStore, entries: list[Entry], report: IngestReport) -> list[Entry]:
        """Entries whose records are not all stored yet; unchanged ones are counted and dropped."""
        by_source = store.ids_by_source([e.source for e in entries if e.source is not None])
        sourceless = [i for e in entries if e.source is None for i in e.ids]
        present = store.existing(sourceless) if sourceless else set()
        todo = []
        for entry in entries:
            stored = by_source[entry.source] if entry.source is not None else present & set(entry.ids)
            if stored == set(entry.ids):
                self._count(report, entry, "unchanged")
                continue
            entry.stale = stored - set(entry.ids)
            entry.updated = bool(entry.stale)
            todo.append(entry)
        return todo

    def _decode(self, entries: list[Entry], report: IngestReport) -> list[Entry]:
        good = []
        for entry in entries:
            payload = entry.payloads[0]
            if isinstance(payload, (bytes, bytearray)):
                label = entry.label
                decoded = guarded(label, lambda: decode_image(bytes(payload), max_pixels=self.max_pixels, origin=label))
                if isinstance(decoded, Skipped):
                    skip(report, decoded)
                    continue
                entry.payloads = [decoded]
            good.append(entry)
        return good

    def _embed_and_store(self, store: ChromaStore, modality: str, entries: list[Entry], report: IngestReport) -> None:
        entries = [e for e in entries if self._storable(e, report)]  # before embedding: no wasted work
        if not entries:
            return
        vectors = self._embed(modality, [p for e in entries for p in e.payloads])
        kept: list[tuple[Entry, list[Any]]] = []
        offset = 0
        for entry in entries:
            rows = vectors[offset : offset + len(entry.payloads)]
            offset += len(entry.payloads)
            entry.payloads = []  # release decoded images before the next window
            failure = next((r for r in rows if isinstance(r, Exception)), None)
            if failure is not None:
                skip(report, Skipped(entry.label, f"embedding failed: {type(failure).__name__}: {failure}"))
            else:
                kept.append((entry, rows))
        done = [entry for entry, _ in self._upsert(store, kept, report)]
        stale = sorted(i for e in done for i in e.stale)
        if stale:
            store.delete(ids=stale)
        for entry in done:
            report.records += len(entry.ids)
            self._count(report, entry, "updated" if entry.updated else "added")

    def _count(self, report: IngestReport, entry: Entry, outcome: str) -> None:
        """Count ``entry`` as ``outcome`` in the report, or tell the documents ledger (a page)."""
        if entry.document is not None and self.documents is not None:
            self.documents.outcome(entry, outcome)
        else:
            setattr(report, outcome, getattr(report, outcome) + 1)

    def _storable(self, entry: Entry, report: IngestReport) -> bool:
        try:
            for id_, meta, doc in zip(entry.ids, entry.metadatas, entry.documents):
                check_record(id_, meta, doc)
            return True
        except StoreError as exc:
            skip(report, Skipped(entry.label, str(exc)))
            return False

    def _upsert(self, store: ChromaStore, kept: list[tuple[Entry, list[Any]]], report: IngestReport) -> list[tuple[Entry, list[Any]]]:
        """Write the window; if the store refuses it, write entry by entry and skip the ones it
        refuses. When it refuses every entry of a window of several, the store is at fault: raise."""
        import numpy as np

        def write(pairs: list[tuple[Entry, list[Any]]]) -> None:
            store.upsert(
                [i for e, _ in pairs for i in e.ids], np.stack([row for _, rows in pairs for row in rows]),
                [m for e, _ in pairs for m in e.metadatas], [d for e, _ in pairs for d in e.documents],
            )

        try:
            write(kept) if kept else None
            return kept
        except StoreError as exc:
            logger.info("storing a window of %d inputs failed (%s); retrying one by one", len(kept), exc)
            first = exc
        done = []
        for pair in kept:
            try:
                write([pair])
                done.append(pair)
            except StoreError as exc:
                skip(report, Skipped(pair[0].label, f"not stored: {exc}"))
        if not done and len(kept) > 1:
            raise first
        return done

    def _embed(self, modality: str, payloads: list[Any]) -> list[Any]:
        """One vector per payload, in batches of ``batch_size``; if a batch fails, its inputs are
        retried one by one and a failing input yields its exception (the rest are kept).
        A :class:`ModelError` or :class:`ConfigError` (the model, not the input) propagates."""
        embedder = self.embedders[modality]
        embed = embedder.embed_images if modality == "image" else embedder.embed_texts
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


__all__ = ["Entry", "IngestReport", "Ingester", "Note", "Skipped", "guarded", "record_id", "short", "skip"]
