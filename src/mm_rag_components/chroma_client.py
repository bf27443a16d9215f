"""Opening Chroma: an embedded database folder or a server, and a lock file that detects a
second writer of an embedded database.

Several processes: an embedded ``PersistentClient`` is for one writing process at a time; a
process reading the same directory may see part of another's write, and concurrent writers are
not supported by Chroma. Share a database through a Chroma server (``make_client(None,
host=..., port=...)``). :func:`writer_lock` (held by ingest) warns when another writer is active.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError, StoreError

logger = logging.getLogger(__name__)

WRITER_LOCK_NAME = "mm-rag-writer.lock"
CONCURRENT_WRITER_WARNING = (
    "another writer ({holder}) holds the embedded Chroma database at {path}: an embedded "
    "PersistentClient is not safe for concurrent writers and readers may see partial writes; "
    "run a Chroma server (`chroma run --path DIR`) and use MultimodalIndex(None, host=..., port=...)"
)


def make_client(
    path: str | Path | None = ".mm-rag/chroma",
    *,
    host: str | None = None,
    port: int = 8000,
    ssl: bool = False,
    headers: Mapping[str, str] | None = None,
    telemetry: bool = False,
) -> Any:
    """An embedded ``PersistentClient(path)``, or an ``HttpClient(host, port)`` when ``host`` is given.

    Anonymous telemetry is off unless ``telemetry=True``. An unreachable server or unusable
    path raises :class:`StoreError`.
    """
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=telemetry)
    try:
        if host is not None:
            return chromadb.HttpClient(host=host, port=port, ssl=ssl, headers=dict(headers or {}), settings=settings)
        if path is None:
            raise ConfigError("give a Chroma path for the embedded store, or host/port for a server")
        Path(path).expanduser().mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(Path(path).expanduser()), settings=settings)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - chromadb raises many types; one plain error for users
        where = f"Chroma server at {host}:{port}" if host is not None else f"Chroma database at {path}"
        raise StoreError(f"cannot open {where}: {plain_message(exc)}") from exc


def plain_message(exc: BaseException) -> str:
    """The first line of an exception's message, with its type when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def writer_lock(client: Any) -> Iterator[None]:
    """Hold an advisory lock file in an embedded database while writing. When another live
    writer (another process, or another index in this one) holds it, log a warning naming server
    mode and go on: it detects, it does not serialise. No lock for servers or without ``fcntl``."""
    try:
        import fcntl

        settings = client.get_settings()
        directory = settings.persist_directory if settings.is_persistent else None
        fd = os.open(Path(directory) / WRITER_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644) if directory else None
    except Exception:  # noqa: BLE001 - Windows, a client that is not chromadb's, an unwritable folder
        fd = None
    if fd is None:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
    except OSError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        who = "this process" if holder == str(os.getpid()) else f"process {holder or '?'}"
        logger.warning(CONCURRENT_WRITER_WARNING.format(holder=who, path=directory))
    try:
        yield
    finally:
        os.close(fd)  # closing releases the lock


__all__ = ["CONCURRENT_WRITER_WARNING", "WRITER_LOCK_NAME", "make_client", "plain_message", "writer_lock"]
