"""Argument checks shared by every component, so bad settings fail at construction with one
:class:`~mm_rag_components.errors.ConfigError` that names the argument.

Each checker returns the (normalised) value, so it reads as an assignment::

    self.batch_size = positive_int("batch_size", batch_size)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import ConfigError

#: ``dtype`` strings we accept, mapped to the name of the torch dtype.
DTYPES: dict[str, str] = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(name: str, value: object, *, minimum: int | None = None, optional: bool = False) -> Any:
    """``value`` if it is an int (not a bool) ``>= minimum``; ``None`` passes when ``optional``."""
    if value is None and optional:
        return None
    if not _is_int(value):
        raise ConfigError(f"{name} must be an integer{' or None' if optional else ''}, got {value!r}")
    if minimum is not None and value < minimum:  # type: ignore[operator]
        raise ConfigError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def positive_int(name: str, value: object, *, optional: bool = False) -> Any:
    """An integer >= 1 (or ``None`` when ``optional``)."""
    return integer(name, value, minimum=1, optional=optional)


def number(
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    optional: bool = False,
    allow_infinite: bool = False,
) -> Any:
    """A real number (int or float, not bool), finite unless ``allow_infinite``, within bounds."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number{' or None' if optional else ''}, got {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an int too large for a float
        raise ConfigError(f"{name} is too large: {value!r:.40}") from None
    if math.isnan(value) or (not allow_infinite and math.isinf(value)):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
        raise ConfigError(f"{name} must be {'>' if exclusive_minimum else '>='} {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {value!r}")
    return value


def positive_number(name: str, value: object, *, optional: bool = False) -> Any:
    """A finite number > 0 (seconds, temperatures …)."""
    return number(name, value, minimum=0.0, exclusive_minimum=True, optional=optional)


def boolean(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, got {value!r}")
    return value


def one_of(name: str, value: object, choices: Iterable[Any]) -> Any:
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def text(name: str, value: object, *, optional: bool = False, non_empty: bool = True) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, str) or (non_empty and not value.strip()):
        raise ConfigError(f"{name} must be a {'non-empty ' if non_empty else ''}string, got {value!r}")
    return value


def dtype_name(value: object) -> Any:
    """``None``, a ``torch.dtype`` (returned as is) or one of :data:`DTYPES` (→ torch's name)."""
    if value is None or type(value).__module__ == "torch":
        return value
    if isinstance(value, str) and value.lower() in DTYPES:
        return DTYPES[value.lower()]
    raise ConfigError(f"dtype must be None, a torch.dtype or one of {sorted(DTYPES)}, got {value!r}")


def torch_dtype(value: object) -> Any:
    """The ``torch.dtype`` for :func:`dtype_name` input (imports torch)."""
    name = dtype_name(value)
    if name is None or not isinstance(name, str):
        return name
    import torch

    return getattr(torch, name)


#: How deep data read from outside (a config, a JSON line) may nest: far beyond any real one, far
#: below Python's recursion limit.
MAX_NESTING = 64


def nesting(name: str, value: Any, *, limit: int = MAX_NESTING) -> Any:
    """``value`` when its mappings, lists and tuples nest at most ``limit`` deep (a scalar is 0,
    ``[]`` is 1); deeper data, or data that contains itself, is a :class:`ConfigError` naming
    ``name``. Walks level by level, so the check itself never recurses."""
    level = {id(value): value} if isinstance(value, (Mapping, list, tuple)) else {}
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            raise ConfigError(f"{name} is nested deeper than {limit} levels (or contains itself)")
        inner: dict[int, Any] = {}
        for item in level.values():
            for child in item.values() if isinstance(item, Mapping) else item:
                if isinstance(child, (Mapping, list, tuple)):
                    inner[id(child)] = child
        level = inner
    return value


def json_value(name: str, text: str | bytes, *, limit: int = MAX_NESTING) -> Any:
    """``text`` parsed as JSON, nested at most ``limit`` deep (:func:`nesting`); bad JSON or deeper
    nesting is a one-line :class:`ConfigError` naming ``name`` (never a ``RecursionError``)."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ConfigError(f"{name} is nested deeper than {limit} levels") from None
    except ValueError as exc:
        raise ConfigError(f"{name}: not valid JSON ({exc})") from None
    return nesting(name, value, limit=limit)


def no_unknown(where: str, options: Mapping[str, Any], known: Iterable[str] = ()) -> None:
    """Refuse keyword arguments nobody reads (``RelevanceFilter(treshold=0.5)``)."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        hint = f"; known options: {', '.join(sorted(known))}" if known else ""
        raise ConfigError(f"{where}: unknown option(s) {', '.join(unknown)}{hint}")


__all__ = [
    "DTYPES",
    "MAX_NESTING",
    "boolean",
    "dtype_name",
    "integer",
    "json_value",
    "nesting",
    "no_unknown",
    "number",
    "one_of",
    "positive_int",
    "positive_number",
    "text",
    "torch_dtype",
]
