"""SQLite files shared by processes (the score cache, the web chat's sessions): one way to open them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .errors import ConfigError


def connect(path: str | Path | None, what: str, *schema: str) -> sqlite3.Connection:
    """A connection usable from any thread (callers serialise their use with a lock) to the
    SQLite file ``path`` — created with its folder, write-ahead logging so several processes can
    share it, waiting up to 30 s for another writer — or to a private in-memory database when
    ``path`` is ``None``. ``schema`` statements run first. Failure is a :class:`ConfigError`
    naming ``what`` the file is for."""
    try:
        if path is None:
            db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        for statement in schema:
            db.execute(statement)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"cannot open the {what} {path}: {exc}") from exc
    return db


__all__ = ["connect"]
