"""The web chat's conversations, by session id, in SQLite.

In memory for one server process, or in a file that every worker of ``mm-rag serve --workers N``
opens (write-ahead logging lets them share it): a user's next question may reach any worker and
still sees the conversation so far, and a restart keeps it. Bounded: at most ``max_sessions``
sessions (the least recently used go first), none older than ``max_age`` seconds since its last
question, at most ``max_exchanges`` exchanges each.

Session ids are random (128 bits) and made here; an id the store does not know — expired, pruned,
or made up — starts a new session.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from pathlib import Path

from ..answer import Exchange
from ..sqlite_files import connect
from ..validate import integer, positive_int, positive_number

_SESSION_ID = re.compile(r"[0-9a-f]{32}")
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, created REAL NOT NULL, used REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS sessions_used ON sessions (used)",
    "CREATE TABLE IF NOT EXISTS exchanges (seq INTEGER PRIMARY KEY AUTOINCREMENT, session TEXT NOT NULL, "
    "question TEXT NOT NULL, answer TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS exchanges_session ON exchanges (session, seq)",
)


class SessionStore:
    """Conversations by session id (module docstring); ``path=None`` keeps them in memory."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        max_sessions: int = 1000,
        max_age: float = 24 * 3600.0,
        max_exchanges: int = 20,
    ) -> None:
        self.path = None if path is None else Path(path).expanduser()
        self.max_sessions = positive_int("max_sessions", max_sessions)
        self.max_age = positive_number("max_age", max_age)
        self.max_exchanges = integer("max_exchanges", max_exchanges, minimum=1)
        self._lock = threading.Lock()
        self._db = connect(self.path, "session store", *SCHEMA)

    def open(self, session: object = None) -> str:
        """``session`` when it is a live session (its clock restarts), else a new session's id."""
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if isinstance(session, str) and _SESSION_ID.fullmatch(session):
                live = "UPDATE sessions SET used = ? WHERE id = ? AND used >= ?"
                if self._db.execute(live, (now, session, now - self.max_age)).rowcount:
                    return session
            fresh = uuid.uuid4().hex
            self._db.execute("INSERT INTO sessions VALUES (?, ?, ?)", (fresh, now, now))
            self._prune(now)
            return fresh

    def history(self, session: str) -> list[Exchange]:
        """The session's exchanges, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT question, answer FROM exchanges WHERE session = ? ORDER BY seq DESC LIMIT ?", (session, self.max_exchanges)
            ).fetchall()
        return [Exchange(question, answer) for question, answer in reversed(rows)]

    def append(self, session: str, exchange: Exchange) -> None:
        """Add an exchange (keeping the last ``max_exchanges``). A session pruned while its
        question ran is brought back: an answer the user saw is not forgotten."""
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT INTO sessions VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET used = excluded.used",
                             (session, now, now))
            self._db.execute("INSERT INTO exchanges (session, question, answer) VALUES (?, ?, ?)",
                             (session, exchange.question, exchange.answer))
            self._db.execute(
                "DELETE FROM exchanges WHERE session = ? AND seq NOT IN "
                "(SELECT seq FROM exchanges WHERE session = ? ORDER BY seq DESC LIMIT ?)",
                (session, session, self.max_exchanges),
            )

    def reset(self, session: str) -> None:
        """Forget the session's exchanges (the session itself goes on)."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM exchanges WHERE session = ?", (session,))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])

    def _prune(self, now: float) -> None:
        """Drop sessions idle for longer than ``max_age``, then the least recently used beyond
        ``max_sessions``, with their exchanges (inside the caller's transaction)."""
        self._db.execute("DELETE FROM sessions WHERE used < ?", (now - self.max_age,))
        self._db.execute(
            "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions ORDER BY used DESC LIMIT -1 OFFSET ?)", (self.max_sessions,)
        )
        self._db.execute("DELETE FROM exchanges WHERE session NOT IN (SELECT id FROM sessions)")

    def close(self) -> None:
        with self._lock:
            self._db.close()


__all__ = ["SessionStore"]
