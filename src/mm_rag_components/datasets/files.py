"""Reading evaluation files: JSON lines, ids and image paths, each refusal one clear error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MediaError
from ..validate import json_value


def read_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``("file:line", object)`` per non-blank line; bad UTF-8, bad JSON, JSON nested
    deeper than :data:`~mm_rag_components.validate.MAX_NESTING` or a non-object fail."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        row = json_value(where, line)
        if not isinstance(row, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {type(row).__name__}")
        yield where, row


def read_id(row: dict[str, Any], key: str, where: str) -> str:
    """``row[key]`` as an id: a non-empty string or an integer, returned as a string."""
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise ConfigError(f"{where}: {key!r} must be a non-empty string or an integer")
    return str(value)


def image_path(root: Path, value: str, where: str) -> str:
    """The absolute path of image ``value`` (relative to ``root``); a missing file is a MediaError."""
    path = root / value
    if not path.is_file():
        raise MediaError(f"{where}: image {value!r} not found in {root}")
    return str(path.resolve())


def check_unique(what: str, ids: list[str]) -> None:
    """Refuse a repeated id."""
    seen: set[str] = set()
    for value in ids:
        if value in seen:
            raise ConfigError(f"{what} id {value!r} appears twice")
        seen.add(value)


__all__ = ["check_unique", "image_path", "read_id", "read_jsonl"]
