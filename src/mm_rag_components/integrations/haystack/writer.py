"""Haystack component that ingests documents and files into a :class:`MultimodalIndex` (convert and delegate)."""

from __future__ import annotations

import asyncio
from dataclasses import fields
from pathlib import Path
from typing import Any

from haystack import Document, component

from ... import config
from ...errors import ConfigError, MediaError
from ...index import IngestReport, MultimodalIndex, Skipped
from ...types import Item
from .common import envelope, init_parameters, warm_index
from .documents import check_documents, document_to_item, path_to_item


@component
class MultimodalDocumentWriter:
    """Write documents and/or files into a :class:`~mm_rag_components.index.MultimodalIndex`.

    ``documents``: image documents (``meta["file_path"]`` naming an image file, or an image
    ``blob``; ``content`` = the caption) are embedded as images, the rest as text; user meta is
    stored, keys the index writes itself (``modality``, ``source`` …) and rerank provenance are not.
    An image given only as a blob is embedded, but the index keeps no pixels: give a file path so
    rerankers can see it after retrieval. ``sources``: folders (``ingest_folder``), image files
    and ``.txt``/``.md`` files; other file types are counted as ignored.

    Ingest is idempotent (unchanged content is not embedded again); bad inputs are reported, never
    fatal. Outputs ``documents_written`` (records written), ``counts`` (every count of the
    :class:`IngestReport`: added, updated, unchanged, ignored, records, skipped …) and
    ``summary`` (its one-line summary plus the skipped files and why).
    """

    def __init__(self, index: MultimodalIndex) -> None:
        if not isinstance(index, MultimodalIndex):
            raise ConfigError(f"index must be a MultimodalIndex, got {type(index).__name__}")
        self.index = index

    def warm_up(self) -> None:
        """Load the index's embedders."""
        warm_index(self.index)

    def to_dict(self) -> dict[str, Any]:
        return envelope(self, index=config.to_dict(self.index))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MultimodalDocumentWriter:
        params = init_parameters(cls, data)
        if not isinstance(params.get("index"), dict):
            raise ConfigError("MultimodalDocumentWriter.from_dict: the saved data has no index")
        return cls(config.from_dict(params["index"]))

    @component.output_types(documents_written=int, counts=dict[str, int], summary=str)
    def run(
        self, documents: list[Document] | None = None, sources: list[str | Path] | None = None
    ) -> dict[str, Any]:
        """Ingest ``documents`` and ``sources`` (at least one must be given)."""
        if documents is None and sources is None:
            raise ConfigError("MultimodalDocumentWriter needs documents or sources")
        docs, paths = check_documents(documents or []), _paths(sources)
        report = IngestReport()
        items = self._file_items(paths, report) + [document_to_item(d) for d in docs]
        if items:
            _add(report, self.index.ingest(items, show_progress=False))
        counts = {f.name: _count(getattr(report, f.name)) for f in fields(report)}
        return {"documents_written": report.records, "counts": counts, "summary": report.summary()}

    def _file_items(self, paths: list[Path], report: IngestReport) -> list[Item]:
        """Ingest folders now; items for single files (unreadable or missing ones are reported)."""
        items: list[Item] = []
        for path in paths:
            if path.is_dir():
                _add(report, self.index.ingest_folder(path, show_progress=False))
                continue
            if not path.exists():
                report.skipped.append(Skipped(str(path), "no such file or folder"))
                continue
            try:
                item = path_to_item(path, getattr(self.index, "max_text_bytes", None))
            except MediaError as exc:
                report.skipped.append(Skipped(str(path), str(exc)))
                continue
            except UnicodeDecodeError as exc:
                report.skipped.append(Skipped(str(path), f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
                continue
            if item is None:
                report.ignored += 1
            else:
                items.append(item)
        return items

    @component.output_types(documents_written=int, counts=dict[str, int], summary=str)
    async def run_async(
        self, documents: list[Document] | None = None, sources: list[str | Path] | None = None
    ) -> dict[str, Any]:
        """Async :meth:`run`: embedding and embedded Chroma are blocking, so they run in a worker thread."""
        return await asyncio.to_thread(self.run, documents, sources)


def _paths(sources: object) -> list[Path]:
    if sources is None:
        return []
    if isinstance(sources, (str, Path)) or not isinstance(sources, (list, tuple)):
        raise ConfigError(f"sources must be a list of paths, got {type(sources).__name__}")
    bad = [s for s in sources if not isinstance(s, (str, Path))]
    if bad:
        raise ConfigError(f"sources must be paths, got {type(bad[0]).__name__}")
    return [Path(s).expanduser() for s in sources]


def _add(total: IngestReport, part: IngestReport) -> None:
    """Add ``part``'s counts and lists (skipped files, notes) to ``total``."""
    for f in fields(IngestReport):
        mine, theirs = getattr(total, f.name), getattr(part, f.name)
        if isinstance(mine, list):
            mine.extend(theirs)
        else:
            setattr(total, f.name, mine + theirs)


def _count(value: int | list[Any]) -> int:
    return len(value) if isinstance(value, list) else value


__all__ = ["MultimodalDocumentWriter"]
