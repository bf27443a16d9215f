"""A cache of pointwise scores, shared by local and remote scorers.

A score is kept under ``sha256(scorer identity, query text, query image sha256, candidate text,
candidate image sha256)`` (plus ``"image+text"`` for a mixed candidate, whose page text a scorer
cuts to a budget). The scorer identity is what decides a score: the model (a local model by the
fingerprint of its weights, so one retrained in the same folder never meets the old scores; a
remote one by its server, name and mode), the full template and the instruction — a scorer's
``cache_identity()`` when it has one, else its saved configuration less the settings that only
change speed (batch sizes, devices' worker counts, timeouts, cache folders …) plus its
``weights_fingerprint()``. A chat's follow-up question over
the same candidates then costs nothing for the candidates already scored with that question.

:class:`ScoreCache` holds scores in memory (an LRU of ``max_items``) and, with ``path``, in a
SQLite file (the standard library's ``sqlite3``, WAL mode, so several processes can share one).
:class:`CachedScorer` wraps any scorer. Only clean results are cached: a finite log-odds whose
flag, if any, is a property of the input (``truncated``, ``missing_image``) — never a failed
request, a timeout or a bound from partial log-probabilities, which may go differently next time.

The file is read as untrusted: a row that is not such a clean result (text, ±inf, an unknown
flag) is a miss, logged, deleted and scored again; a file damaged or replaced while open is set
aside (a warning; the cache goes on in memory); a path that is not a regular file, or a database
whose ``scores`` table has another shape, is refused when the cache opens.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import math
import sqlite3
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import BackendError, ConfigError, MediaError
from ..media import content_hash, is_url, load_image_with_hash, read_image_bytes
from ..sqlite_files import connect
from ..types import MIXED, Candidate, ImageSource, Query
from ..validate import integer
from .base import IMAGE_NOT_SHOWN, MISSING_IMAGE, TRUNCATED, PointScore, RelevanceScorer, ascore

logger = logging.getLogger(__name__)

#: Flags that a clean result may carry (they depend on the input only).
CACHEABLE_FLAGS = frozenset({TRUNCATED, MISSING_IMAGE, IMAGE_NOT_SHOWN})
#: Configuration keys that change speed, not scores: left out of a scorer's identity.
SPEED_KEYS = frozenset({
    "batch_size", "vision_batch_size", "vision_cache_size", "device", "local_files_only", "fast",
    "timeout", "retries", "backoff", "max_backoff", "max_concurrency", "vision_cache_dir", "vision_cache_max_bytes",
})
Entry = tuple[float, "str | None"]


class ScoreCache:
    """Scores in memory (LRU, ``max_items``) and, with ``path``, in a SQLite file."""

    def __init__(self, path: str | Path | None = None, *, max_items: int = 100_000) -> None:
        self.path = Path(path) if path is not None else None
        self.max_items = integer("max_items", max_items, minimum=0)
        self.hits = 0
        self.misses = 0
        self._memory: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if self.path is not None:
            self._db = _open(self.path)

    def config(self) -> dict[str, Any]:
        return {"path": str(self.path) if self.path is not None else None, "max_items": self.max_items}

    def __len__(self) -> int:
        """Entries in memory."""
        return len(self._memory)

    def _remember(self, key: str, entry: Entry) -> None:
        if self.max_items == 0:
            return
        self._memory[key] = entry
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_items:
            self._memory.popitem(last=False)

    def get_many(self, keys: Iterable[str]) -> dict[str, Entry]:
        """The cached entries among ``keys`` (memory first, then the file)."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Entry] = {}
        with self._lock:
            for key in wanted:
                entry = self._memory.get(key)
                if entry is not None:
                    self._memory.move_to_end(key)
                    found[key] = entry
            rest = [k for k in wanted if k not in found]
            if rest and self._db is not None:
                self._read(rest, found)
            self.hits += len(found)
            self.misses += len(wanted) - len(found)
        return found

    def put_many(self, entries: dict[str, Entry]) -> None:
        if not entries:
            return
        with self._lock:
            for key, entry in entries.items():
                self._remember(key, entry)
            if self._db is not None:
                try:
                    with self._db:  # one transaction
                        self._db.execute("BEGIN IMMEDIATE")
                        self._db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?)", [(k, z, f) for k, (z, f) in entries.items()])
                except sqlite3.Error as exc:
                    self._failed("write to", exc)

    def clear(self) -> None:
        """Forget everything, on disk too."""
        with self._lock:
            self._memory.clear()
            if self._db is not None:
                try:
                    self._db.execute("DELETE FROM scores")
                except sqlite3.Error as exc:
                    self._failed("clear", exc)

    def _read(self, keys: list[str], found: dict[str, Entry]) -> None:
        """Rows of ``keys`` from the file into ``found``; a row that is not a clean score is a miss
        (logged, deleted); a file that cannot be read is set aside (:meth:`_failed`)."""
        assert self._db is not None
        bad: list[str] = []
        try:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, logodds, flag in self._db.execute(f"SELECT key, logodds, flag FROM scores WHERE key IN ({marks})", chunk):
                    entry = _entry(logodds, flag)
                    if entry is None:
                        bad.append(key)
                        continue
                    found[key] = entry
                    self._remember(key, entry)
            if bad:
                logger.warning("score cache %s: %d entr%s not a clean score (e.g. %.60r); scoring again", self.path, len(bad),
                               "y is" if len(bad) == 1 else "ies are", bad[0])
                self._db.executemany("DELETE FROM scores WHERE key = ?", [(k,) for k in bad])
        except sqlite3.Error as exc:
            self._failed("read", exc)

    def _failed(self, what: str, exc: sqlite3.Error) -> None:
        """A file another writer holds is a miss this time; any other failure (a damaged or
        replaced file) sets the file aside: this cache goes on in memory only, with a warning."""
        if getattr(exc, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED"):
            logger.warning("score cache %s: cannot %s it now (%s); going on without it this time", self.path, what, exc)
            return
        logger.warning("score cache %s: cannot %s it (%s); set aside, scores are kept in memory only from now on "
                       "(remove the file to start a new one)", self.path, what, exc)
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
        self._db = None

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


SCHEMA = "CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, logodds REAL NOT NULL, flag TEXT)"
#: ``PRAGMA table_info(scores)`` of :data:`SCHEMA`: (name, type, not null, primary key) per column.
COLUMNS = [("key", "TEXT", 0, 1), ("logodds", "REAL", 1, 0), ("flag", "TEXT", 0, 0)]


def _open(path: Path) -> sqlite3.Connection:
    """The SQLite file at ``path`` with the scores table; a path that is not a regular file, or a
    database whose ``scores`` table is another shape, is a :class:`ConfigError`."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise ConfigError(f"cannot open the score cache {path}: {exc.strerror or exc}") from None
    if mode is not None and not stat.S_ISREG(mode):  # a FIFO or a device would block or never end
        raise ConfigError(f"cannot open the score cache {path}: not a regular file")
    db = connect(path, "score cache", SCHEMA)
    try:
        columns = [(name, kind.upper(), notnull, pk) for _, name, kind, notnull, _, pk in db.execute("PRAGMA table_info(scores)")]
    except sqlite3.Error as exc:
        db.close()
        raise ConfigError(f"cannot open the score cache {path}: {exc}") from None
    if columns != COLUMNS:
        db.close()
        raise ConfigError(f"cannot open the score cache {path}: its scores table is not a score cache's "
                          f"(columns {[c[0] for c in columns]}); remove it or choose another file")
    return db


def _entry(logodds: object, flag: object) -> Entry | None:
    """A row as a cached entry, or ``None`` unless it is a finite number and a flag a clean
    result may carry (what :meth:`CachedScorer._store` writes)."""
    if isinstance(logodds, bool) or not isinstance(logodds, (int, float)):
        return None
    value = float(logodds)
    if not math.isfinite(value):
        return None
    if flag is not None and (not isinstance(flag, str) or not set(flag.split(",")) - {""} <= CACHEABLE_FLAGS):
        return None
    return value, flag


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.compare}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def scorer_identity(scorer: Any) -> str:
    """A digest of what decides ``scorer``'s scores (see the module docstring)."""
    own = getattr(scorer, "cache_identity", None)
    if callable(own):
        data = own()
    else:
        from ..config import to_dict

        data = {k: v for k, v in to_dict(scorer).items() if k not in SPEED_KEYS}
        if getattr(scorer, "template", None) is not None:
            data["template"] = scorer.template  # the full template, not only its name
        weights = getattr(scorer, "weights_fingerprint", None)
        if callable(weights):  # a model retrained in the same folder is another model
            data["weights"] = weights()
    payload = json.dumps({"type": type(scorer).__name__, **_plain(data)}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def image_digest(source: ImageSource | None) -> str | None:
    """sha256 of an image's bytes (a URL stands for itself); :class:`MediaError` if unreadable."""
    if source is None:
        return None
    if is_url(source):
        return "url:" + str(source)
    if isinstance(source, (str, Path, bytes, bytearray, memoryview)):
        return content_hash(read_image_bytes(source)[0])
    return load_image_with_hash(source).sha256


class CachedScorer:
    """``scorer`` behind a :class:`ScoreCache` (sync and async); only misses reach ``scorer``.

    ``cache``: a :class:`ScoreCache`, a SQLite path, or ``None`` (a new in-memory cache).
    ``identity`` replaces the derived scorer identity (for scorers without ``config()``).
    """

    def __init__(self, scorer: RelevanceScorer, cache: ScoreCache | str | Path | None = None, *, identity: str | None = None) -> None:
        if not callable(getattr(scorer, "score", None)):
            raise ConfigError(f"scorer must have score(query, candidates), got {type(scorer).__name__}")
        self.scorer = scorer
        self.cache = cache if isinstance(cache, ScoreCache) else ScoreCache(cache)
        self._identity_arg = identity
        self.identity = identity if identity is not None else scorer_identity(scorer)
        self.name = str(getattr(scorer, "name", type(scorer).__name__))

    def config(self) -> dict[str, Any]:
        return {"scorer": self.scorer, "cache": self.cache, "identity": self._identity_arg}

    def warm_up(self) -> None:
        warm = getattr(self.scorer, "warm_up", None)
        if callable(warm):
            warm()

    def _keys(self, query: Query, candidates: Sequence[Candidate]) -> list[str | None]:
        if not isinstance(query, Query):
            raise ConfigError(f"query must be a Query, got {type(query).__name__}")
        try:
            query_part = [query.text, image_digest(query.image)]
        except MediaError:
            return [None] * len(candidates)  # the scorer reports the unreadable query image
        keys: list[str | None] = []
        for candidate in candidates:
            try:
                row = [self.identity, *query_part, candidate.text, image_digest(candidate.image_source)]
                if candidate.modality == MIXED:  # a page's text is cut to a budget: not the same prompt
                    row.append(MIXED)
            except MediaError:
                keys.append(None)  # the scorer flags it; nothing to cache
                continue
            keys.append(hashlib.sha256(json.dumps(row).encode("utf-8", "surrogatepass")).hexdigest())
        return keys

    def _lookup(self, query: Query, candidates: Sequence[Candidate]) -> tuple[list[str | None], list[PointScore | None], list[int]]:
        keys = self._keys(query, candidates)
        found = self.cache.get_many(k for k in keys if k is not None)
        out: list[PointScore | None] = [PointScore.from_logodds(*found[k]) if k in found else None for k in keys]
        return keys, out, [i for i, p in enumerate(out) if p is None]

    def _store(self, keys: list[str | None], out: list[PointScore | None], todo: list[int], fresh: Sequence[PointScore]) -> list[PointScore]:
        if len(fresh) != len(todo):
            raise BackendError(f"scorer {self.name!r} returned {len(fresh)} scores for {len(todo)} candidates")
        entries = {}
        for i, point in zip(todo, fresh):
            out[i] = point
            key = keys[i]
            flags = set((point.flag or "").split(",")) - {""}
            if key is not None and math.isfinite(point.logodds) and flags <= CACHEABLE_FLAGS:
                entries[key] = (float(point.logodds), point.flag)
        self.cache.put_many(entries)
        return out  # type: ignore[return-value]

    def score(self, query: Query, candidates: Sequence[Candidate]) -> list[PointScore]:
        keys, out, todo = self._lookup(query, candidates)
        fresh = self.scorer.score(query, [candidates[i] for i in todo]) if todo else []
        return self._store(keys, out, todo, fresh)

    @property
    def remote(self) -> bool:
        """Whether the wrapped scorer works on a server (calls may overlap)."""
        return bool(getattr(self.scorer, "remote", False))

    async def ascore(self, query: Query, candidates: Sequence[Candidate]) -> list[PointScore]:
        keys, out, todo = await asyncio.to_thread(self._lookup, query, candidates)  # hashing images: off the loop
        fresh = await ascore(self.scorer, query, [candidates[i] for i in todo]) if todo else []
        return self._store(keys, out, todo, fresh)


__all__ = ["CACHEABLE_FLAGS", "CachedScorer", "ScoreCache", "image_digest", "scorer_identity"]
