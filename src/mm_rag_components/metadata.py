"""Metadata rules: user metadata in Chroma's types, and the check every record passes before it
is stored (a record Chroma half-accepts can leave an embedded collection unreadable)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import ConfigError, StoreError
from .unicode import clean_text
from .types import RECORD_KEYS

#: Metadata keys our components write; user metadata may not use them.
RESERVED_KEYS = frozenset(RECORD_KEYS)
#: Longest string accepted as a metadata value (metadata is for labels, not payloads).
MAX_METADATA_CHARS = 65_536
#: Most metadata entries (a list counts one per element) accepted from a user per record.
MAX_METADATA_ENTRIES = 1024
#: Most metadata entries ``upsert`` sends per record (embedded Chroma 1.x breaks the collection
#: for good on a record with about 5,000).
MAX_RECORD_ENTRIES = 4096
_MAX_DEPTH = 16
_INT64 = 2**63


def flatten_metadata(metadata: Mapping[str, Any], *, reserved: Iterable[str] = RESERVED_KEYS) -> dict[str, Any]:
    """User metadata in Chroma's types. Documented conversion:

    * ``str``, ``int``, ``float``, ``bool`` stay as they are; ``None`` and empty lists are dropped;
    * nested mappings flatten to dotted keys (``{"exif": {"iso": 100}}`` → ``"exif.iso": 100``);
    * lists / tuples / sets of one scalar type stay lists (so ``$contains`` filters work; ints
      mixed with floats become floats); any other list becomes its JSON text;
    * ``datetime``/``date`` become ISO-8601 text, other objects (``Path``, enums …) ``str(value)``.

    Refused with :class:`ConfigError`: non-string, reserved (``modality``, ``source`` …) or
    ``$``/``#``/``chroma:`` keys, two keys that flatten to one (``{"a.b": 1, "a": {"b": 2}}``),
    nesting over 16 levels, bytes, images, ``data:`` URIs, strings over
    :data:`MAX_METADATA_CHARS`, over :data:`MAX_METADATA_ENTRIES` entries (list elements count one
    each), NaN/infinite floats, integers beyond 64 bits. Unicode is repaired by :func:`clean_metadata`.
    """
    if not isinstance(metadata, Mapping):
        raise ConfigError(f"metadata must be a mapping, got {type(metadata).__name__}")
    flat = _flatten(metadata, frozenset(reserved), "", 0)
    entries = sum(len(v) if isinstance(v, list) else 1 for v in flat.values())
    if entries > MAX_METADATA_ENTRIES:
        raise ConfigError(f"metadata has {entries:,} entries (list elements count one each); the limit is {MAX_METADATA_ENTRIES:,}")
    return flat


def _flatten(metadata: Mapping[Any, Any], reserved: frozenset[str], prefix: str, depth: int) -> dict[str, Any]:
    if depth > _MAX_DEPTH:
        raise ConfigError(f"metadata {prefix[:-1]!r:.80} is nested more than {_MAX_DEPTH} levels deep")
    flat: dict[str, Any] = {}
    for raw_key, value in metadata.items():
        if not isinstance(raw_key, str) or not raw_key:
            raise ConfigError(f"metadata keys must be non-empty strings, got {raw_key!r}")
        key = prefix + raw_key
        if key in reserved:
            raise ConfigError(f"metadata key {key!r} is reserved (reserved: {', '.join(sorted(reserved))})")
        if key.startswith(("$", "#", "chroma:")):
            raise ConfigError(f"metadata key {key!r}: keys may not start with '$', '#' or 'chroma:'")
        nested = isinstance(value, Mapping)
        converted = _flatten(value, reserved, key + ".", depth + 1) if nested else _metadata_value(key, value)
        items = converted.items() if nested else [] if converted is None else [(key, converted)]
        for name, item in items:
            if name in flat:
                raise ConfigError(f"metadata keys collide after flattening nested mappings: {name!r} is given twice")
            flat[name] = item
    return flat


def clean_metadata(metadata: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Flat metadata with invalid Unicode repaired (see :func:`~mm_rag_components.media.clean_text`)
    in keys, strings and string lists, and the (repaired) keys that changed. Keys that become
    equal are a :class:`ConfigError`."""
    out: dict[str, Any] = {}
    changed: list[str] = []
    for key, value in metadata.items():
        name, bad = clean_text(key)
        if isinstance(value, str):
            value, fixed = clean_text(value)
            bad = bad or fixed
        elif isinstance(value, list) and value and isinstance(value[0], str):
            pairs = [clean_text(v) for v in value]
            value, bad = [v for v, _ in pairs], bad or any(f for _, f in pairs)
        if name in out:
            raise ConfigError(f"metadata keys collide once invalid Unicode is replaced: {name!r}")
        out[name] = value
        if bad:
            changed.append(name)
    return out, changed


def _metadata_value(key: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (bool, str, int, float)):
        return _scalar(key, value)
    if isinstance(value, (bytes, bytearray, memoryview)) or hasattr(value, "getpixel"):
        raise ConfigError(f"metadata {key!r}: {type(value).__name__} values are not stored (no blobs in metadata)")
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else list(value)
        if not items:
            return None
        kinds = {bool if isinstance(v, bool) else type(v) for v in items}
        if kinds <= {int, float} and float in kinds:
            return [_scalar(key, float(v)) for v in items]
        if len(kinds) == 1 and kinds <= {bool, str, int, float}:
            return [_scalar(key, v) for v in items]
        try:
            return _scalar(key, json.dumps(items, sort_keys=True, default=str))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"metadata {key!r} cannot be stored: {exc}") from exc
    try:
        text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    except Exception as exc:  # noqa: BLE001 - a user object's own conversion failed
        raise ConfigError(f"metadata {key!r}: {type(value).__name__} cannot be converted to text: {exc}") from exc
    return _scalar(key, text if isinstance(text, str) else repr(text))


def _scalar(key: str, value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not -_INT64 <= value < _INT64:
        raise ConfigError(f"metadata {key!r}: integer {value} does not fit in 64 bits; store it as a string")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"metadata {key!r}: {value} is not a finite number")
    if isinstance(value, str):
        if value[:5].lower() == "data:":
            raise ConfigError(f"metadata {key!r}: data: URIs are not stored (no blobs in metadata)")
        if len(value) > MAX_METADATA_CHARS:
            raise ConfigError(f"metadata {key!r}: {len(value):,} characters is over the limit of {MAX_METADATA_CHARS:,}")
    return value


def check_record(id_: Any, metadata: Mapping[str, Any], document: Any) -> None:
    """Raise :class:`StoreError` unless Chroma can store this record whole: a non-empty id, a
    ``str``/``None`` document, metadata of Chroma's types (one-type non-empty lists) with at most
    :data:`MAX_RECORD_ENTRIES` entries, and valid Unicode everywhere."""
    texts = [id_] if isinstance(id_, str) and id_ else None
    if texts is None or not (document is None or isinstance(document, str)) or not isinstance(metadata, Mapping):
        raise StoreError(f"record {id_!r:.80}: needs a non-empty string id, a str or None document and a metadata mapping")
    texts += [document or "", *metadata]
    entries = 0
    for key, value in metadata.items():
        values = value if isinstance(value, list) else [value]
        kinds = {bool if isinstance(v, bool) else type(v) for v in values}
        bad_key = not isinstance(key, str) or not key or key.startswith(("$", "#", "chroma:"))
        if bad_key or len(kinds) != 1 or not kinds <= {bool, int, float, str} or not all(_finite(v) for v in values):
            raise StoreError(f"record {id_!r}: Chroma cannot store metadata {key!r:.80}: {value!r:.80}")
        texts += [v for v in values if isinstance(v, str)]
        entries += len(values)
    if entries > MAX_RECORD_ENTRIES:
        raise StoreError(f"record {id_!r}: {entries:,} metadata entries is over the limit of {MAX_RECORD_ENTRIES:,}")
    if any(clean_text(t)[1] for t in texts):
        raise StoreError(f"record {id_!r}: invalid Unicode (lone surrogates); repair it with media.clean_text")


def _finite(value: Any) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


__all__ = [
    "MAX_METADATA_CHARS",
    "MAX_METADATA_ENTRIES",
    "MAX_RECORD_ENTRIES",
    "RESERVED_KEYS",
    "check_record",
    "clean_metadata",
    "flatten_metadata",
]
