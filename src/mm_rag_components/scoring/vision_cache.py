"""Vision features by (model and settings, image content hash): a bounded in-memory LRU, backed
by an optional :class:`~mm_rag_components.scoring.disk_cache.DiskFeatureCache` that outlives the
process and is shared between processes."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from .disk_cache import DiskFeatureCache


class VisionFeatureCache:
    """Thread-safe LRU: a second query over the same images skips the vision tower.

    With ``disk``, a miss in memory is looked up on disk (and kept in memory), and every new
    entry is also written there, so the next process starts warm.
    """

    def __init__(self, max_items: int = 512, *, disk: DiskFeatureCache | None = None) -> None:
        self.max_items = max_items
        self.disk = disk
        self._items: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, str]) -> Any | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return value
        value = self.disk.get(_disk_key(key)) if self.disk is not None else None
        with self._lock:
            if value is None:
                self.misses += 1
                return None
            self.hits += 1
        self._remember(key, value)
        return value

    def put(self, key: tuple[str, str], value: Any) -> None:
        self._remember(key, value)
        if self.disk is not None:
            self.disk.put(_disk_key(key), value)

    def contains(self, key: tuple[str, str]) -> bool:
        """True when ``key`` is in memory or on disk (nothing is loaded)."""
        with self._lock:
            if key in self._items:
                return True
        return self.disk is not None and _disk_key(key) in self.disk

    def _remember(self, key: tuple[str, str], value: Any) -> None:
        if self.max_items <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def clear(self) -> None:
        """Forget the entries in memory (the disk cache is left as it is)."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def _disk_key(key: tuple[str, str]) -> str:
    import hashlib

    return hashlib.sha256("\0".join(key).encode()).hexdigest()


__all__ = ["VisionFeatureCache"]
