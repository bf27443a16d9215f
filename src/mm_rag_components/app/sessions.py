"""The web chat's conversations, by session id, in SQLite.

In memory for one server process, or in a file that every worker of ``mm-rag serve --workers N``
opens (write-ahead logging lets them share it): a user's next question may reach any worker and
still sees the conversation so far, and a restart keeps it. Bounded: at most ``max_sessions``
sessions, none older than ``max_age`` seconds since its last question, at most ``max_exchanges``
exchanges each.

Session ids are random (128 bits) and made here; an id the store does not know — expired, pruned,
or made up — starts a new session. Each session remembers the client (address) that started it,
and one client holds at most ``max_sessions_per_client``: beyond that its own least recently used
session goes. When the store is full, the session to go is the least recently used one of the
client holding the most — so one client's flood of new sessions pushes out its own, never a live
conversation of someone else.

The store also remembers which image files the chat has shown (:meth:`SessionStore.remember_media`):
``/media/<token>`` serves only those, and every worker sharing the file can serve them.
"""

from __future__ import annotations

import hashlib
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
    "CREATE TABLE IF NOT EXISTS media (token TEXT PRIMARY KEY, path TEXT NOT NULL, sha256 TEXT NOT NULL, used REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS media_used ON media (used)",
)
#: Added to files made before sessions knew their client (one ALTER TABLE, once).
CLIENT_COLUMN = ("ALTER TABLE sessions ADD COLUMN client TEXT NOT NULL DEFAULT ''",
                 "CREATE INDEX IF NOT EXISTS sessions_client ON sessions (client, used)")
DEFAULT_MAX_SESSIONS_PER_CLIENT = 64
#: Image files remembered for ``/media`` (the least recently shown go first beyond this).
MAX_MEDIA = 100_000


class SessionStore:
    """Conversations by session id (module docstring); ``path=None`` keeps them in memory."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        max_sessions: int = 1000,
        max_age: float = 24 * 3600.0,
        max_exchanges: int = 20,
        max_sessions_per_client: int = DEFAULT_MAX_SESSIONS_PER_CLIENT,
    ) -> None:
        self.path = None if path is None else Path(path).expanduser()
        self.max_sessions = positive_int("max_sessions", max_sessions)
        self.max_age = positive_number("max_age", max_age)
        self.max_exchanges = integer("max_exchanges", max_exchanges, minimum=1)
        self.max_sessions_per_client = positive_int("max_sessions_per_client", max_sessions_per_client)
        self._lock = threading.Lock()
        self._db = connect(self.path, "session store", *SCHEMA)
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if "client" not in {row[1] for row in self._db.execute("PRAGMA table_info(sessions)")}:
                self._db.execute(CLIENT_COLUMN[0])
            self._db.execute(CLIENT_COLUMN[1])

    def open(self, session: object = None, client: str = "") -> str:
        """``session`` when it is a live session (its clock restarts), else a new session's id,
        started by ``client`` (its address)."""
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if self._touch(session, now):
                return session  # type: ignore[return-value]
            fresh = uuid.uuid4().hex
            self._db.execute("INSERT INTO sessions (id, created, used, client) VALUES (?, ?, ?, ?)", (fresh, now, now, client))
            self._prune(now, client)
            return fresh

    def history(self, session: str) -> list[Exchange]:
        """The session's exchanges, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT question, answer FROM exchanges WHERE session = ? ORDER BY seq DESC LIMIT ?", (session, self.max_exchanges)
            ).fetchall()
        return [Exchange(question, answer) for question, answer in reversed(rows)]

    def append(self, session: str, exchange: Exchange, client: str = "") -> None:
        """Add an exchange (keeping the last ``max_exchanges``). A session pruned while its
        question ran is brought back: an answer the user saw is not forgotten."""
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT INTO sessions (id, created, used, client) VALUES (?, ?, ?, ?) "
                             "ON CONFLICT (id) DO UPDATE SET used = excluded.used", (session, now, now, client))
            self._db.execute("INSERT INTO exchanges (session, question, answer) VALUES (?, ?, ?)",
                             (session, exchange.question, exchange.answer))
            self._db.execute(
                "DELETE FROM exchanges WHERE session = ? AND seq NOT IN "
                "(SELECT seq FROM exchanges WHERE session = ? ORDER BY seq DESC LIMIT ?)",
                (session, session, self.max_exchanges),
            )

    def reset(self, session: object) -> bool:
        """Forget a live session's exchanges (the session itself goes on); an unknown session is
        left alone — nothing is created. True when there was such a session."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if not self._touch(session, time.time()):
                return False
            self._db.execute("DELETE FROM exchanges WHERE session = ?", (session,))
            return True

    def remember_media(self, path: str, sha256: str) -> str:
        """A token under which the image file ``path`` (expected content hash ``sha256``) may be
        served; the same file gets the same token."""
        token = hashlib.sha256(f"{path}\0{sha256}".encode("utf-8", "surrogatepass")).hexdigest()[:32]
        now = time.time()
        with self._lock, self._db:
            self._db.execute("INSERT INTO media VALUES (?, ?, ?, ?) ON CONFLICT (token) DO UPDATE SET used = excluded.used",
                             (token, path, sha256, now))
            self._db.execute("DELETE FROM media WHERE used < ?", (now - self.max_age,))
            self._db.execute("DELETE FROM media WHERE token IN (SELECT token FROM media ORDER BY used DESC LIMIT -1 OFFSET ?)",
                             (MAX_MEDIA,))
        return token

    def media(self, token: str) -> tuple[str, str] | None:
        """(path, sha256) of an image file the chat has shown under ``token``, else ``None``."""
        if not _SESSION_ID.fullmatch(token):
            return None
        with self._lock:
            row = self._db.execute("SELECT path, sha256 FROM media WHERE token = ? AND used >= ?",
                                   (token, time.time() - self.max_age)).fetchone()
        return None if row is None else (row[0], row[1])

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])

    def _touch(self, session: object, now: float) -> bool:
        """Restart a live session's clock (inside the caller's transaction); False when unknown."""
        if not isinstance(session, str) or not _SESSION_ID.fullmatch(session):
            return False
        live = "UPDATE sessions SET used = ? WHERE id = ? AND used >= ?"
        return bool(self._db.execute(live, (now, session, now - self.max_age)).rowcount)

    def _prune(self, now: float, client: str) -> None:
        """Drop sessions idle for longer than ``max_age``, ``client``'s least recently used beyond
        its share, then — while the store is over ``max_sessions`` — the least recently used of
        the client holding the most, with their exchanges (inside the caller's transaction)."""
        self._db.execute("DELETE FROM sessions WHERE used < ?", (now - self.max_age,))
        self._db.execute(
            "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE client = ? ORDER BY used DESC LIMIT -1 OFFSET ?)",
            (client, self.max_sessions_per_client),
        )
        excess = int(self._db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]) - self.max_sessions
        for _ in range(max(0, excess)):
            self._db.execute(
                "DELETE FROM sessions WHERE id = (SELECT id FROM sessions WHERE client = "
                "(SELECT client FROM sessions GROUP BY client ORDER BY COUNT(*) DESC, MIN(used) LIMIT 1) ORDER BY used LIMIT 1)"
            )
        self._db.execute("DELETE FROM exchanges WHERE session NOT IN (SELECT id FROM sessions)")

    def close(self) -> None:
        with self._lock:
            self._db.close()


__all__ = ["DEFAULT_MAX_SESSIONS_PER_CLIENT", "SessionStore"]
