"""Paths that are not regular files, for tests of code that must refuse them without waiting."""

from __future__ import annotations

import os
from pathlib import Path

#: What :func:`make_special` can put at a path.
KINDS = ("fifo", "folder", "symlink to /dev/zero", "symlink to /dev/null")


def make_special(path: Path, kind: str) -> Path:
    """Put a ``kind`` (one of :data:`KINDS`) at ``path``: reading it would block, never end, or fail."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind.startswith("symlink to "):
        path.symlink_to(kind.removeprefix("symlink to "))
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return path
