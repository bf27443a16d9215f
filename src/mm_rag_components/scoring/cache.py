"""A cache of pointwise scores, shared by local and remote scorers.

A score is kept under ``sha256(scorer identity, query text, query image sha256, candidate text,
candidate image sha256)`` (plus ``"image+text"`` for a mixed candidate, whose page text a scorer
cuts to a budget). The scorer identity is what decides a score: the model (and for a remote
scorer the server and mode), the full template and the instruction — a scorer's
``cache_identity()`` when it has one, else its saved configuration less the settings that only
change speed (batch sizes, devices' worker counts, timeouts …). A chat's follow-up question over
the same candidates then costs nothing for the candidates already scored with that question.

:class:`ScoreCache` holds scores in memory (an LRU of ``max_items``) and, with ``path``, in a
SQLite file (the standard library's ``sqlite3``, WAL mode, so several processes can share one).
:class:`CachedScorer` wraps any scorer. Only clean results are cached: a finite log-odds whose
flag, if any, is a property of the input (``truncated``, ``missing_image``) — never a failed
request, a timeout or a bound from partial log-probabilities, which may go differently next time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import sqlite3
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

#: Flags that a clean result may carry (they depend on the input only).
CACHEABLE_FLAGS = frozenset({TRUNCATED, MISSING_IMAGE, IMAGE_NOT_SHOWN})
#: Configuration keys that change speed, not scores: left out of a scorer's identity.
SPEED_KEYS = frozenset({
    "batch_size", "vision_batch_size", "vision_cache_size", "device", "local_files_only", "fast",
    "timeout", "retries", "backoff", "max_backoff", "max_concurrency",
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
            self._db = connect(self.path, "score cache", "CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, logodds REAL NOT NULL, flag TEXT)")

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
                for start in range(0, len(rest), 500):
                    chunk = rest[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    for key, logodds, flag in self._db.execute(f"SELECT key, logodds, flag FROM scores WHERE key IN ({marks})", chunk):
                        found[key] = (float(logodds), flag)
                        self._remember(key, found[key])
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
                with self._db:  # one transaction
                    self._db.execute("BEGIN IMMEDIATE")
                    self._db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?)", [(k, z, f) for k, (z, f) in entries.items()])

    def clear(self) -> None:
        """Forget everything, on disk too."""
        with self._lock:
            self._memory.clear()
            if self._db is not None:
                self._db.execute("DELETE FROM scores")

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


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
