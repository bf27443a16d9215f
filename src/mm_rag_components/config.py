"""Save a component's configuration as plain data and rebuild it: model names, templates and
options — never weights, never secrets.

``to_dict(component)`` gives ``{"type": "<ClassName>", <constructor arguments>}``; nested
components (a reranker's scorer, a template, a calibration) are dicts of the same shape, so the
whole thing is JSON/YAML-ready. ``from_dict(data)`` rebuilds it. Only registered classes are
rebuilt (:data:`REGISTRY` plus :func:`register`), so loading a config never imports arbitrary code.

A class takes part by offering ``config() -> dict`` of its constructor arguments; dataclasses
take part as they are. Framework adapters (LlamaIndex, Haystack, LangChain) serialise the core
object they wrap with these two functions.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .validate import nesting

TYPE_KEY = "type"

#: Class name → module (relative to this package) of every component that can be rebuilt.
REGISTRY: dict[str, str] = {
    "TransformersScorer": "scoring.transformers_scorer",
    "PointwiseTemplate": "scoring.templates",
    "PointwiseRanker": "rerank.pointwise",
    "ListwiseRanker": "rerank.listwise",
    "ListwisePrompt": "rerank.listwise_prompts",
    "TransformersGenerator": "generation.transformers",
    "FilterPolicy": "filters",
    "Calibration": "calibration",
    "ClipEmbedder": "embedders",
    "TextEmbedder": "embedders",
    "MultimodalIndex": "index",
    "ChromaStore": "store",
    "QAPipeline": "app.pipeline",
    "RetrievalOptions": "retrieval",
    "LlamaIndexGenerator": "integrations.llama_index.generator",
    "MultimodalAnswerer": "answer",
    "AnswerPrompt": "answer",
    "OpenAIChatScorer": "remote.chat_scorer",
    "RerankEndpointScorer": "remote.rerank_endpoint",
    "OpenAIChatGenerator": "remote.chat_generator",
    "ScoreCache": "scoring.cache",
    "CachedScorer": "scoring.cache",
    "HaystackChatGenerator": "integrations.haystack.generator",
    "LangChainGenerator": "integrations.langchain.generator",
}
_EXTRA: dict[str, type] = {}
#: Keys never written: credentials belong in the environment, not in a saved pipeline.
SECRET_KEYS = frozenset({"api_key", "token", "password", "headers"})


def register(cls: type) -> type:
    """Let :func:`from_dict` rebuild ``cls`` (usable as a class decorator for your own scorers)."""
    _EXTRA[cls.__name__] = cls
    return cls


def _class(name: object) -> type:
    if not isinstance(name, str):
        raise ConfigError(f"a component config needs a string {TYPE_KEY!r}, got {name!r}")
    if name in _EXTRA:
        return _EXTRA[name]
    module = REGISTRY.get(name)
    if module is None:
        known = sorted({*REGISTRY, *_EXTRA})
        raise ConfigError(f"unknown component type {name!r}; known: {', '.join(known)} (see config.register)")
    return getattr(importlib.import_module(f".{module}", __package__), name)


def to_dict(component: Any) -> dict[str, Any]:
    """``{"type": ClassName, **constructor arguments}``, nested components included."""
    if dataclasses.is_dataclass(component) and not isinstance(component, type):
        values = {f.name: getattr(component, f.name) for f in dataclasses.fields(component) if f.init}
    else:
        get = getattr(component, "config", None)
        if not callable(get):
            raise ConfigError(
                f"{type(component).__name__} cannot be saved: it has no config() method "
                "(give it one returning its constructor arguments, and register the class)"
            )
        values = get()
    return {TYPE_KEY: type(component).__name__, **{k: _encode(v, k) for k, v in values.items() if k not in SECRET_KEYS}}


def _encode(value: Any, key: str) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{key}: {value} cannot be saved (not a finite number)")
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_encode(v, key) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _encode(v, f"{key}.{k}") for k, v in value.items() if k not in SECRET_KEYS}
    if type(value).__module__ == "torch":  # a torch.dtype or device
        return str(value).removeprefix("torch.")
    return to_dict(value)


def from_dict(data: Mapping[str, Any], **overrides: Any) -> Any:
    """Rebuild a component saved by :func:`to_dict`; ``overrides`` replace top-level arguments
    (for what cannot be saved, e.g. ``from_dict(data, llm=my_llm)``)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a component config must be a mapping, got {type(data).__name__}")
    nesting("a component config", data)
    cls = _class(data.get(TYPE_KEY))
    kwargs = {k: _decode(v) for k, v in data.items() if k != TYPE_KEY}
    kwargs.update(overrides)
    build = getattr(cls, "from_config", None)
    try:
        return build(**kwargs) if callable(build) else cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"cannot rebuild {cls.__name__} from its config: {exc}") from exc


def _decode(value: Any) -> Any:
    if isinstance(value, Mapping):
        if TYPE_KEY in value and isinstance(value[TYPE_KEY], str):
            return from_dict(value)
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


__all__ = ["REGISTRY", "SECRET_KEYS", "TYPE_KEY", "from_dict", "register", "to_dict"]
