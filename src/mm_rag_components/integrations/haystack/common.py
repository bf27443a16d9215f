"""What every Haystack component here shares: the saved-pipeline envelope around our configs.

Components save as Haystack expects (``{"type": "<module>.<Class>", "init_parameters": {...}}``);
inside ``init_parameters`` the wrapped core object is the plain data of
:func:`mm_rag_components.config.to_dict`, rebuilt with :func:`mm_rag_components.config.from_dict`.
Haystack only imports component classes from trusted modules, so load a saved pipeline with
``Pipeline.loads(text, allowed_modules=["mm_rag_components"])``.
"""

from __future__ import annotations

from typing import Any

from haystack import default_to_dict
from haystack.core.serialization import generate_qualified_class_name

from ... import config
from ...errors import ConfigError


def envelope(component: Any, **init_parameters: Any) -> dict[str, Any]:
    """Haystack's ``{"type", "init_parameters"}`` dict for ``component``."""
    return default_to_dict(component, **init_parameters)


def init_parameters(cls: type, data: object) -> dict[str, Any]:
    """The ``init_parameters`` of a dict written by ``cls.to_dict()`` (a copy)."""
    if not isinstance(data, dict) or data.get("type") != generate_qualified_class_name(cls):
        found = data.get("type") if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"{cls.__name__}.from_dict needs the dict written by its to_dict(), got type {found!r}")
    params = data.get("init_parameters") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{cls.__name__}.from_dict: init_parameters must be a mapping")
    return dict(params)


def decode_options(options: dict[str, Any]) -> dict[str, Any]:
    """Keyword options saved as plain data (the 0.1 shape of a pointwise reranker built from a
    model): saved components are rebuilt, the rest passes."""
    def revive(value: Any) -> Any:
        saved = isinstance(value, dict) and isinstance(value.get(config.TYPE_KEY), str)
        return config.from_dict(value) if saved else value

    return {key: revive(value) for key, value in options.items()}


__all__ = ["decode_options", "envelope", "init_parameters"]
