"""Reading sources into :class:`~mm_rag_components.ingest.Entry` objects: files and items read,
checked against the size limits, hashed and (texts) chunked — no decoding, no embedding yet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .chunking import GuardedSplitter
from .errors import MediaError
from .ingest import Entry, Skipped, record_id, short
from .files import FoundFile, read_regular_file
from .media import check_source, content_hash, is_url, load_image_with_hash, read_image_bytes
from .metadata import clean_metadata, flatten_metadata
from .types import CHUNK, FILE_NAME, MODALITY, SHA256, SOURCE, Item
from .unicode import clean_text


@dataclass
class EntryReader:
    """Builds entries within an index's limits; ``splitter`` gives the guarded text splitter
    (called only when a text is read, so the default splitter loads on first use)."""

    max_pixels: int | None
    max_text_bytes: int
    max_image_bytes: int
    splitter: Callable[[], GuardedSplitter]

    def file_entry(self, found: FoundFile, source: str, renamed: bool, meta: dict[str, Any]) -> Entry | Skipped:
        if found.problem:
            return Skipped(source, found.problem)
        notes = [f"file name is not valid UTF-8; stored as {source!r} (it cannot be reopened by that name)"] if renamed else []
        if found.kind == "image":
            return self.image_entry(found.path, source, meta, caption=None, label=source, notes=notes)
        data = read_regular_file(found.path, max_bytes=self.max_text_bytes, limit_name="max_text_bytes")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            return Skipped(source, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
        return self.text_entry(text, source, meta, label=source, notes=notes)

    def item_entry(self, item: Any, label: str, allow_urls: bool) -> Entry | Skipped:
        if not isinstance(item, Item):
            return Skipped(label, f"not an Item: {type(item).__name__}")
        source, repaired = check_source(item.source)
        notes = ["invalid Unicode replaced with U+FFFD in the source"] if repaired else []
        meta, keys = clean_metadata(flatten_metadata(item.metadata if item.metadata is not None else {}))
        notes += [f"invalid Unicode replaced with U+FFFD in metadata {keys}"] if keys else []
        if item.image is not None:
            return self.image_entry(item.image, source, meta, caption=item.text, label=label, notes=notes, allow_urls=allow_urls)
        return self.text_entry(item.text, source, meta, label=label, notes=notes)

    def image_entry(
        self, image: Any, source: str | None, meta: dict[str, Any], *, caption: Any, label: str, notes: list[str],
        allow_urls: bool = False,
    ) -> Entry | Skipped:
        if caption is not None:
            caption = self.clean(caption, "caption (Item.text)", notes)
        if hasattr(image, "getpixel"):  # a PIL image: hash its pixels
            loaded = load_image_with_hash(image, max_pixels=self.max_pixels)
            payload, digest, origin = loaded.image, loaded.sha256, None
        else:
            payload, origin = read_image_bytes(image, allow_urls=allow_urls, max_file_bytes=self.max_image_bytes)
            if not payload:
                raise MediaError(f"{label}: empty image data (0 bytes)")
            if len(payload) > self.max_image_bytes:
                raise MediaError(f"{label}: {len(payload):,} bytes is over max_image_bytes={self.max_image_bytes:,}")
            digest = content_hash(payload)
        source = source or check_source(origin)[0]
        record = {**meta, MODALITY: "image", SHA256: digest}
        if source:
            record.update({SOURCE: source, FILE_NAME: _file_name(source)})
        return Entry(label, source, "image", [record_id("image", source, digest)], [record], [caption], [payload], notes)

    def clean(self, text: Any, what: str, notes: list[str]) -> str:
        """``text`` as valid Unicode within ``max_text_bytes`` (:class:`MediaError` otherwise)."""
        if not isinstance(text, str):
            raise MediaError(f"{what} must be a string, got {type(text).__name__}")
        text, repaired = clean_text(text)
        if repaired:
            notes.append(f"invalid Unicode (lone surrogates) replaced with U+FFFD in the {what}")
        size = _too_big(text, self.max_text_bytes)
        if size is not None:
            raise MediaError(f"{what} of {size:,} bytes is over max_text_bytes={self.max_text_bytes:,}")
        return text

    def text_entry(self, text: Any, source: str | None, meta: dict[str, Any], *, label: str, notes: list[str]) -> Entry | Skipped:
        text = self.clean(text, "text", notes)
        if not text.strip():
            return Skipped(label, "empty text")
        split = self.splitter().split(text)
        chunks = split.chunks
        if not chunks:
            return Skipped(label, "no text left after splitting")
        digest = content_hash(text)
        ids = [record_id("text", source, content_hash(chunk), i) for i, chunk in enumerate(chunks)]
        records = [{**meta, MODALITY: "text", SHA256: digest, CHUNK: i} for i in range(len(chunks))]
        if source:
            for record in records:
                record.update({SOURCE: source, FILE_NAME: _file_name(source)})
        notes = notes + split.notes
        return Entry(label, source, "text", ids, records, list(chunks), list(chunks), notes, split.duplicates)


def _too_big(text: str, max_bytes: int) -> int | None:
    """The UTF-8 size of ``text`` when it is over ``max_bytes``, else ``None`` (cheap when small)."""
    if len(text) * 4 <= max_bytes:
        return None
    size = len(text.encode("utf-8", "surrogatepass"))
    return size if size > max_bytes else None


def item_label(number: int, item: Any) -> str:
    """How an item is named in a report: ``item #n`` and its source when it has one."""
    label = f"item #{number}"
    try:
        source = item.source if isinstance(item, Item) else None
        return label + (f" ({short(str(source), 80)})" if source else "")
    except Exception:  # noqa: BLE001 - a source whose str() fails is reported by the checks
        return label


def _file_name(source: str) -> str:
    return source.rstrip("/").rsplit("/", 1)[-1] if is_url(source) or "://" in source else Path(source).name


__all__ = ["EntryReader", "item_label"]
