"""Removing records: those of a source (a file, a PDF's pages, an item's ``source``) or given ids,
and those of files that vanished from an ingested folder. Page images that no record names any
more go with them. The caller holds the writer lock."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .media import is_url
from .pages import PageImages, image_paths
from .store import ChromaStore
from .types import IMAGE_PATH, SOURCE
from .unicode import clean_path, clean_text


def source_names(source: str | Path) -> list[str]:
    """The spellings a source may be stored under: as given, and (for a path) resolved."""
    names = [clean_path(source)[0] if isinstance(source, Path) else clean_text(str(source))[0]]
    if not is_url(names[0]) and "://" not in names[0]:
        try:
            names.append(clean_path(Path(source).expanduser().resolve())[0])
        except (OSError, ValueError, RuntimeError):  # not a path (NUL byte, unknown ~user): as given
            pass
    return list(dict.fromkeys(names))


def delete_records(
    image_store: ChromaStore, text_store: ChromaStore, pages: PageImages | None, *, names: Sequence[str], ids: list[str] | None,
) -> int:
    """Delete the records whose ``source`` is one of ``names`` and/or whose id is in ``ids``; how many went."""
    where: dict[str, Any] | None = None if not names else {SOURCE: names[0]} if len(names) == 1 else {SOURCE: {"$in": list(names)}}
    images = image_paths(image_store, ids=ids) if ids else set()
    images |= image_paths(image_store, where=where) if where else set()
    removed = 0
    for store in (image_store, text_store):
        if ids is not None:
            removed += store.delete(ids=ids)
        if where:
            removed += store.delete(where=where)
    _release(image_store, pages, images)
    return removed


def delete_vanished(
    image_store: ChromaStore, text_store: ChromaStore, pages: PageImages | None, root: Path, seen: set[str], recursive: bool,
) -> int:
    """Delete the records of files under ``root`` (only its top level when not ``recursive``) that
    no longer exist and were not ``seen`` in this run; how many went."""
    removed, images = 0, set()
    for store in (image_store, text_store):
        gone = []
        for id_, meta in store.iter_metadata():
            source = str(meta.get(SOURCE, ""))
            if not source or source in seen or is_url(source):
                continue
            path = Path(source)
            inside = path.parent == root if not recursive else root in path.parents
            if inside and not path.exists():
                gone.append(id_)
                if meta.get(IMAGE_PATH):
                    images.add(str(meta[IMAGE_PATH]))
        removed += store.delete(ids=gone) if gone else 0
    _release(image_store, pages, images)
    return removed


def _release(image_store: ChromaStore, pages: PageImages | None, paths: set[str]) -> None:
    """Delete the page images among ``paths`` that no record names any more."""
    if paths and pages is not None:
        pages.release(paths, image_store)


__all__ = ["delete_records", "delete_vanished", "source_names"]
