"""Files as ingest meets them: regular files read safely up to a byte limit, and folders walked
without following symlinks that leave them.

:func:`read_regular_file` opens without blocking and checks the open descriptor, so a FIFO or a
device (directly or through a symlink) is refused instead of hanging; :func:`walk_media` lists a
folder's files lazily, sorted, hidden ones left out, each with the kind ingest makes of it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import MediaError
from .unicode import clean_path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
TEXT_SUFFIXES = frozenset({".txt", ".md"})
#: Documents read page by page (:mod:`~mm_rag_components.pages`).
PDF_SUFFIXES = frozenset({".pdf"})


def file_kind(mode: int) -> str:
    """A plain name for the file type in an ``st_mode`` (``"FIFO"``, ``"directory"`` …)."""
    for test, name in ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def open_regular_file(path: str | os.PathLike[str]) -> int:
    """A read-only descriptor of the regular file ``path`` (the caller closes it).

    The file is opened without blocking and checked on the open descriptor, so a FIFO or device
    (directly or through a symlink) is refused instead of hanging. Failures are :class:`MediaError`
    naming the file.
    """
    name = clean_path(path)[0]
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError as exc:
        raise MediaError(f"{name}: no such file") from exc
    except (OSError, ValueError) as exc:
        raise MediaError(f"{name}: cannot open: {getattr(exc, 'strerror', None) or exc}") from exc
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        os.close(fd)
        raise MediaError(f"{name}: cannot read: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise MediaError(f"{name}: not a regular file ({file_kind(mode)}); only regular files are read")
    return fd


def read_regular_file(path: str | os.PathLike[str], *, max_bytes: int | None, limit_name: str = "max_bytes") -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` bytes (``None``: no limit).

    Opened as :func:`open_regular_file` opens it (a FIFO or device is refused instead of hanging
    or filling memory); a file that grows while it is read is still cut at the limit. Failures
    are :class:`MediaError` naming the file and, for the size, ``limit_name``.
    """
    name = clean_path(path)[0]
    fd = open_regular_file(path)
    try:
        info = os.fstat(fd)
        if max_bytes is not None and info.st_size > max_bytes:
            raise MediaError(f"{name}: {info.st_size:,} bytes is over {limit_name}={max_bytes:,}")
        data = _read_at_most(fd, max_bytes)
    except OSError as exc:
        raise MediaError(f"{name}: cannot read: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if max_bytes is not None and len(data) > max_bytes:
        raise MediaError(f"{name}: more than {limit_name}={max_bytes:,} bytes")
    return data


def _read_at_most(fd: int, max_bytes: int | None) -> bytes:
    """Read to the end, or to one byte past ``max_bytes`` (so growth past the limit shows)."""
    chunks, total = [], 0
    while max_bytes is None or total <= max_bytes:
        want = 1 << 20 if max_bytes is None else min(1 << 20, max_bytes + 1 - total)
        chunk = os.read(fd, want)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


@dataclass(frozen=True)
class FoundFile:
    """A file met by :func:`walk_media`: ``kind`` is ``"image"``, ``"text"``, ``"pdf"`` or
    ``"other"`` (by suffix); ``problem`` says why it must not be read (a symlink leaving the folder)."""

    path: Path
    kind: str
    problem: str | None = None


def media_kind(path: Path) -> str:
    """``"image"``, ``"text"``, ``"pdf"`` or ``"other"``: what ingest makes of a file, by its suffix."""
    suffix = path.suffix.lower()
    for kind, suffixes in (("image", IMAGE_SUFFIXES), ("text", TEXT_SUFFIXES), ("pdf", PDF_SUFFIXES)):
        if suffix in suffixes:
            return kind
    return "other"


def walk_media(
    root: Path,
    *,
    recursive: bool = True,
    follow_external_symlinks: bool = False,
    on_error: Callable[[OSError], None] | None = None,
) -> Iterator[FoundFile]:
    """Every non-hidden file under the resolved folder ``root``, sorted, lazily.

    Hidden files and folders are left out and symlinked folders are never descended. An image,
    text or PDF reached through a symlink whose target lies outside ``root`` comes with a
    ``problem`` unless ``follow_external_symlinks``. Nothing is opened here.
    """
    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            kind = media_kind(path)
            problem = None if kind == "other" or follow_external_symlinks else _external_link(path, root)
            yield FoundFile(path, kind, problem)


def _external_link(path: Path, root: Path) -> str | None:
    """Why ``path`` is not followed: a symlink whose target is outside ``root``; else ``None``."""
    try:
        if not path.is_symlink():
            return None
        target = Path(os.path.realpath(path))
    except (OSError, ValueError):
        return None  # reading it will report the problem
    if target == root or root in target.parents:
        return None
    return (
        f"symbolic link to {clean_path(target)[0]}, outside the ingested folder; "
        "not followed (pass follow_external_symlinks=True to follow it)"
    )


__all__ = [
    "FoundFile", "IMAGE_SUFFIXES", "PDF_SUFFIXES", "TEXT_SUFFIXES", "file_kind", "media_kind", "open_regular_file",
    "read_regular_file", "walk_media",
]
