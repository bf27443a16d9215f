"""Lazy attribute access for packages: heavy modules load on first use of a public name."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(
    package: str, names: Mapping[str, str], deprecated: Mapping[str, tuple[str, str]] | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` resolving ``names`` (name → submodule).

    ``deprecated``: old name → ``(absolute module, name there)``; each access resolves it with a
    :class:`DeprecationWarning` naming the new place (kept for one release)."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        if deprecated and name in deprecated:
            import warnings

            target, new_name = deprecated[name]
            warnings.warn(
                f"{package}.{name} is deprecated: use {target}.{new_name} (the old name goes in 0.3)",
                DeprecationWarning, stacklevel=2,
            )
            return getattr(importlib.import_module(target), new_name)
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value  # resolve once
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__


def moved_attributes(old: str, new: str, names: Mapping[str, str] | None = None) -> Callable[[str], Any]:
    """``__getattr__`` for a module that moved: each name resolves from ``new`` (or the module
    ``names`` gives it), with a :class:`DeprecationWarning` naming the new place."""
    import warnings

    def __getattr__(name: str) -> Any:
        target = (names or {}).get(name, new)
        module = importlib.import_module(target)
        if name.startswith("__") or not hasattr(module, name):
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        warnings.warn(f"{old}.{name} moved to {target}.{name}; the old path goes in 0.3", DeprecationWarning, stacklevel=2)
        return getattr(module, name)

    return __getattr__
