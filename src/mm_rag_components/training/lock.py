"""One training run per output folder: an ``fcntl`` lock on ``<output>/.mm-rag-train.lock``.

The operating system drops the lock when its holder ends, however it ends (a kill -9 included),
so a lock file left behind never blocks the next run. The file holds the holder's process id,
for the message a second run gets.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError

logger = logging.getLogger(__name__)

LOCK_NAME = ".mm-rag-train.lock"


@contextmanager
def output_lock(folder: Path) -> Iterator[Path]:
    """Hold ``folder`` (created if missing) for this run; a folder another run holds is a
    one-line :class:`ConfigError`. On the way out the lock file goes, and so does the folder if
    this run created it and left nothing in it."""
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    try:
        import fcntl  # noqa: F401 - POSIX only
    except ImportError:  # pragma: no cover - Windows
        logger.warning("no fcntl on this platform: %s is not locked against a second training run", folder)
        handle = None
    else:
        handle = _acquire(path, folder)
    try:
        yield folder
    finally:
        if handle is not None:
            path.unlink(missing_ok=True)  # before unlocking: a run that opens it now sees it go
            os.close(handle)
        if created:
            try:
                folder.rmdir()  # only when empty
            except OSError:
                pass


def _acquire(path: Path, folder: Path) -> int:
    import fcntl

    for _ in range(10):  # the file may be replaced between open and lock by a run finishing
        try:
            handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot lock the output folder {folder}: {LOCK_NAME}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(handle, 32, 0).decode("ascii", "replace").strip()
            os.close(handle)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = f" (process {holder})" if holder.isdigit() else ""
                raise ConfigError(f"another training run{who} is writing to {folder}; wait for it to finish or choose "
                                  "another output folder") from None
            raise ConfigError(f"cannot lock the output folder {folder}: {exc.strerror or exc}") from None
        try:
            same = os.fstat(handle).st_ino == os.stat(path, follow_symlinks=False).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(handle, 0)
            os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
            return handle
        os.close(handle)
    raise ConfigError(f"cannot lock the output folder {folder}: its lock file keeps changing")


__all__ = ["LOCK_NAME", "output_lock"]
