"""Haystack component that ingests documents and files into a :class:`MultimodalIndex` (convert and delegate)."""

from __future__ import annotations

import asyncio
from dataclasses import fields
from pathlib import Path
from typing import Any

from haystack import Document, component

from ... import config
from ...errors import ConfigError
from ...index import MultimodalIndex
from .common import envelope, init_parameters
from .documents import check_documents, document_to_item


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
        self.index.warm_up()

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
        docs = check_documents(documents or [])
        report = self.index.ingest_paths(_paths(sources), show_progress=False)
        if docs:
            report.add(self.index.ingest([document_to_item(d) for d in docs], show_progress=False))
        counts = {f.name: _count(getattr(report, f.name)) for f in fields(report)}
        return {"documents_written": report.records, "counts": counts, "summary": report.summary()}

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


def _count(value: int | list[Any]) -> int:
    return len(value) if isinstance(value, list) else value


__all__ = ["MultimodalDocumentWriter"]
