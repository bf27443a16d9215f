"""Chroma's HNSW settings for a collection: which exist, which can change later, and checks.

:func:`check_hnsw` validates what a user asks for. Chroma takes them all when it creates a
collection; on an existing one :func:`hnsw_update` says which search-time settings
(:data:`HNSW_MODIFIABLE`) to change, and refuses a different build-time one
(:data:`HNSW_CREATION_ONLY`): those are fixed when Chroma builds the index.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import ConfigError, StoreError
from .validate import integer, number

#: HNSW settings fixed when Chroma builds the index (a new collection is needed to change them).
HNSW_CREATION_ONLY = ("space", "ef_construction", "max_neighbors")
#: HNSW settings Chroma lets an existing collection change (``collection.modify``).
HNSW_MODIFIABLE = ("ef_search", "sync_threshold", "resize_factor")
#: Accepted by Chroma 1.x but not stored with the collection, so they would silently not apply.
_HNSW_NOT_STORED = ("num_threads", "batch_size")
_HNSW_INT_MAX = 2**31 - 1


def check_hnsw(hnsw: Mapping[str, Any] | None) -> dict[str, Any]:
    """Chroma HNSW settings as a plain dict, or :class:`ConfigError` naming what is wrong.

    Keys: ``space`` (only ``"cosine"``), ``ef_construction`` (>= 1), ``max_neighbors`` (>= 2),
    ``ef_search`` (>= 1), ``sync_threshold`` (>= 2) — integers up to 2**31 - 1 — and
    ``resize_factor`` (a number > 1, at most 10).
    """
    if hnsw is None:
        return {}
    if not isinstance(hnsw, Mapping):
        raise ConfigError(f"hnsw must be a mapping of Chroma HNSW settings, got {type(hnsw).__name__}")
    settings = dict(hnsw)
    known = (*HNSW_CREATION_ONLY, *HNSW_MODIFIABLE)
    for key, value in settings.items():
        if key in _HNSW_NOT_STORED:
            raise ConfigError(f"hnsw[{key!r}]: Chroma 1.x does not store this setting with a collection, so it would not apply")
        if key not in known:
            raise ConfigError(f"hnsw: unknown setting {key!r}; known: {', '.join(known)}")
        if key == "space":
            if value != "cosine":
                raise ConfigError(f"hnsw['space'] must be 'cosine' (the store scores by cosine similarity), got {value!r}")
        elif key == "resize_factor":
            number(f"hnsw['{key}']", value, minimum=1.0, exclusive_minimum=True, maximum=10.0)
        elif integer(f"hnsw['{key}']", value, minimum=2 if key in ("max_neighbors", "sync_threshold") else 1) > _HNSW_INT_MAX:
            raise ConfigError(f"hnsw[{key!r}] must be <= {_HNSW_INT_MAX}, got {value!r}")
    return settings


def stored_hnsw(handle: Any) -> dict[str, Any]:
    """The HNSW settings Chroma holds for a collection (its handle)."""
    return dict((handle.configuration_json or {}).get("hnsw") or {})


def hnsw_update(collection: str, wanted: Mapping[str, Any], stored: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of ``wanted`` that differ from ``stored`` (to ``modify`` the collection with),
    or a :class:`StoreError` when one of them is fixed at creation."""
    differ = {k: v for k, v in wanted.items() if k in stored and stored[k] != v}
    fixed = {k: v for k, v in differ.items() if k in HNSW_CREATION_ONLY}
    if fixed:
        was = ", ".join(f"{k}={stored[k]!r}" for k in fixed)
        want = ", ".join(f"{k}={v!r}" for k, v in fixed.items())
        raise StoreError(
            f"collection {collection!r} was created with HNSW {was}; {want} is fixed when a collection is "
            "created: use a new collection name (and ingest again) for these settings, or drop them from hnsw="
        )
    return differ


__all__ = ["HNSW_CREATION_ONLY", "HNSW_MODIFIABLE", "check_hnsw", "hnsw_update", "stored_hnsw"]
