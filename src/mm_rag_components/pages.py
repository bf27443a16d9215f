"""Documents (PDFs) as pages: every page becomes an image record (its rendering) and text records
(its text layer, chunked), all carrying the document, title, page number, page count and one page
id, so they can be grouped again.

Page images are stored once, content-addressed: ``<page_dir>/ab/abcdef….jpg``, named by the
sha256 of the rendered pixels, so ``Candidate.image_path`` is a real file any consumer can open,
an unchanged page is neither encoded nor embedded again, and identical pages share one file. A
file goes when the last record naming it goes. JPEG, not PNG: encoding a page as PNG costs about
as much as embedding it on a small CPU; JPEG at quality 92 without chroma subsampling costs a
tenth of that and keeps text legible to a reader model.

Ingest streams: :class:`PageReader` yields a document's pages as entries one page at a time
(rendered, hashed, saved if new, chunked) and :class:`DocumentLedger` settles each document when
the run ends: the records of pages it no longer has are deleted, it is counted once (added,
updated or unchanged), and its notes are reported.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .entries import EntryReader
from .errors import MediaError
from .files import FoundFile, read_regular_file
from .ingest import Entry, IngestReport, Note, Skipped, guarded, record_id, short
from .media import DEFAULT_MAX_IMAGE_BYTES, content_hash
from .pdf import Page, PdfFile
from .types import CHUNK, FILE_NAME, IMAGE_PATH, MODALITY, PAGE, PAGE_COUNT, PAGE_ID, SHA256, SOURCE, TITLE

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from .store import ChromaStore

#: Pages listed by number in a note before the rest are only counted.
_LISTED = 20
#: JPEG quality of stored page images (with 4:4:4 chroma, so small text stays legible).
JPEG_QUALITY = 92


@dataclass
class PageImages:
    """A folder of page images, each a JPEG (quality 92, no chroma subsampling: text stays crisp)
    named by the sha256 of the rendered pixels: ``ab/abcdef….jpg``. A file is written under a
    temporary name and renamed, so it is whole or absent, and written again by the next ingest of
    its document when it has gone missing."""

    folder: Path

    def path(self, digest: str) -> Path:
        return self.folder / digest[:2] / f"{digest}.jpg"

    def save(self, image: Image.Image, digest: str) -> tuple[str, bytes, bool]:
        """``(path, the file's bytes, created)``: the image's file, written only when missing or
        unreadable (``created``). The record stores the sha256 of these bytes, as for any image
        file: the web chat checks it before serving the file, and a reranker's vision cache keys
        on it, so the features computed at ingest are the ones a query finds."""
        path = self.path(digest)
        if path.is_file():
            try:
                return str(path), read_regular_file(path, max_bytes=DEFAULT_MAX_IMAGE_BYTES), False
            except MediaError:  # replaced by something that is not a readable file: written again
                pass
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
        data = buffer.getvalue()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".jpg", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return str(path), data, True

    def release(self, paths: Iterable[str], image_store: ChromaStore) -> int:
        """Delete the files among ``paths`` (inside this folder) that no stored record names; returns
        how many went."""
        removed = 0
        for name in sorted(set(paths)):
            path = Path(name)
            if path.parent.parent != self.folder or image_store.get(where={IMAGE_PATH: name}, limit=1):
                continue
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
        return removed


def image_paths(image_store: ChromaStore, *, ids: list[str] | None = None, where: dict | None = None) -> set[str]:
    """The page image files named by the image records chosen by ``ids`` or ``where``."""
    hits = image_store.get(ids=ids, where=where)
    return {str(h.metadata[IMAGE_PATH]) for h in hits if h.metadata.get(IMAGE_PATH)}


@dataclass
class _Document:
    ids: set[str] = field(default_factory=set)
    outcomes: dict[str, int] = field(default_factory=lambda: {"added": 0, "updated": 0, "unchanged": 0})
    complete: bool = True
    textless: list[int] = field(default_factory=list)
    empty: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class DocumentLedger:
    """What one ingest run did to each document; :meth:`finish` settles them (see module doc)."""

    def __init__(self) -> None:
        self.documents: dict[str, _Document] = {}
        self.written: set[str] = set()  # page image files created in this run
        self.kept: set[str] = set()  # page image files of records stored or found unchanged

    def start(self, source: str) -> _Document:
        return self.documents.setdefault(source, _Document())

    def outcome(self, entry: Entry, outcome: str) -> None:
        """Called by the Ingester for every page entry it stored or found unchanged."""
        self.documents[entry.document or ""].outcomes[outcome] += 1
        self.kept.update(str(m[IMAGE_PATH]) for m in entry.metadatas if m.get(IMAGE_PATH))

    def finish(self, image_store: ChromaStore, text_store: ChromaStore, images: PageImages | None, report: IngestReport) -> None:
        """Delete the records of pages a document no longer has (only when every page was read),
        count each document once, report its notes, and delete page images no record names."""
        released = self.written - self.kept
        for source, doc in self.documents.items():
            stale = 0
            if doc.complete:
                for store in (image_store, text_store):
                    old = sorted(store.ids_by_source([source]).get(source, set()) - doc.ids)
                    if old and store is image_store and images is not None:
                        released |= image_paths(store, ids=old)
                    stale += store.delete(ids=old) if old else 0
            done = doc.outcomes
            if done["added"] or done["updated"] or stale:
                changed = stale or done["unchanged"] or done["updated"]
                report.updated += bool(changed)
                report.added += not changed
            elif done["unchanged"]:
                report.unchanged += 1
            for note in doc.notes + _listed(doc.textless, TEXTLESS) + _listed(doc.empty, EMPTY):
                report.notes.append(Note(short(source, 300), short(note)))
        if images is not None and released:
            images.release(released, image_store)


TEXTLESS = "page(s) without a text layer (scanned?) stored as images only"
EMPTY = "page(s) with neither a text layer nor a page image: nothing stored for them"


def _listed(pages: list[int], what: str) -> list[str]:
    """One note naming ``pages`` (the first few by number), or none."""
    if not pages:
        return []
    listed = ", ".join(map(str, pages[:_LISTED])) + (f" and {len(pages) - _LISTED} more" if len(pages) > _LISTED else "")
    return [f"{len(pages)} {what}: {listed}"]


@dataclass
class PageReader:
    """Reads PDF files into page entries within an index's limits.

    ``images``: where page images are stored (``None``: pages are read as text only);
    ``problem``: why no PDF can be read (every PDF is then skipped with it).
    """

    reader: EntryReader
    dpi: float
    max_pages: int
    images: PageImages | None
    ledger: DocumentLedger
    problem: str | None = None

    def entries(self, found: FoundFile, source: str, renamed: bool, meta: dict[str, Any]) -> Iterator[Entry | Skipped]:
        """The entries of every page of ``found`` (a PDF), or why it was skipped."""
        if found.problem or self.problem:
            yield Skipped(source, found.problem or self.problem or "")
            return
        opened = guarded(source, lambda: PdfFile(found.path))
        if isinstance(opened, Skipped):
            yield opened
            return
        with opened as pdf:
            doc = self.ledger.start(source)
            doc.notes += [f"file name is not valid UTF-8; stored as {source!r}"] if renamed else []
            doc.notes += pdf.notes
            count = min(pdf.page_count, self.max_pages)
            if count < pdf.page_count:
                doc.notes.append(f"only the first {count:,} of {pdf.page_count:,} pages were read (max_pages_per_file={self.max_pages:,})")
            title = pdf.title or Path(source).stem
            progress = 1
            for number in range(1, count + 1):
                label = f"{source} p. {number}"
                built = guarded(label, lambda: self._page(pdf, number, source, title, pdf.page_count, meta, doc))
                if isinstance(built, Skipped):
                    doc.complete = False
                    yield built
                    continue
                for entry in built:
                    entry.progress, progress = progress, 0
                    doc.ids.update(entry.ids)
                    yield entry

    def _page(self, pdf: PdfFile, number: int, source: str, title: str, page_count: int, meta: dict[str, Any], doc: _Document) -> list[Entry]:
        page = pdf.page(number, dpi=self.dpi, max_pixels=self.reader.max_pixels, render=self.images is not None)
        label = f"{source} p. {number}"
        image_digest = page.digest if page.image is not None else ""
        text_digest = content_hash(page.text) if page.text.strip() else ""
        page_id = content_hash(f"{source}\0{number}\0{image_digest}\0{text_digest}")[:32]
        key = f"{page_id}\0{page_count}\0{title}"
        base = {**meta, SOURCE: source, FILE_NAME: Path(source).name, TITLE: title, PAGE: number, PAGE_COUNT: page_count, PAGE_ID: page_id}
        entries = []
        if page.image is not None and self.images is not None:
            path, data, created = self.images.save(page.image, image_digest)
            if created:
                self.ledger.written.add(path)
            record = {**base, MODALITY: "image", SHA256: content_hash(data), IMAGE_PATH: path}
            ids = [record_id("image", key, image_digest)]
            # embedded from the lossless rendering (no JPEG decode); reranker features are precomputed
            # on the stored JPEG, which is what a scorer opens at query time
            entries.append(Entry(label, None, "image", ids, [record], [None], [page.image], list(page.notes), document=source,
                                 stored=data))
        if text_digest:
            try:
                entries += self._text(page, label, key, base, notes=[] if entries else list(page.notes))
            except MediaError as exc:  # e.g. over max_text_bytes: the page image is kept
                doc.notes.append(f"page {number}: text layer not stored: {exc}")
        if not text_digest and entries:
            doc.textless.append(number)
        if not entries:
            doc.empty.append(number)
            doc.notes += page.notes
        return entries

    def _text(self, page: Page, label: str, key: str, base: dict[str, Any], notes: list[str]) -> list[Entry]:
        entry = self.reader.text_entry(page.text, None, {}, label=label, notes=notes)
        if isinstance(entry, Skipped):
            return []
        entry.ids = [record_id("text", key, content_hash(chunk), i) for i, chunk in enumerate(entry.documents)]
        entry.metadatas = [{**base, MODALITY: "text", SHA256: m[SHA256], CHUNK: m[CHUNK]} for m in entry.metadatas]
        entry.document = str(base[SOURCE])
        return [entry]


__all__ = ["DocumentLedger", "PageImages", "PageReader", "image_paths"]
