"""Save a component's configuration as plain data and rebuild it: model names, templates and
options — never weights, never secrets.

``to_dict(component)`` gives ``{"type": "<ClassName>", <constructor arguments>}``; nested
components (a reranker's scorer, a template, a calibration) are dicts of the same shape, so the
whole thing is JSON/YAML-ready. ``from_dict(data)`` rebuilds it. Only registered classes are
rebuilt (:data:`REGISTRY` plus :func:`register`), so loading a config never imports arbitrary code.

A class takes part by offering ``config() -> dict`` of its constructor arguments; dataclasses
take part as they are. Framework adapters (LlamaIndex, Haystack, LangChain) serialise the core
object they wrap with these two functions.

Loading a config is a trust boundary: a config file may come from anywhere, so it carries no
permissions of its own.

* **No code.** ``trust_remote_code: true`` anywhere in it (a model's, a processor's options) is a
  :class:`ConfigError` unless the caller passes ``from_dict(data, allow_remote_code=True)``.
* **No keys to strangers.** A remote component whose config names its own ``base_url`` gets no API
  key from the environment (``MMRAG_API_KEY``, ``OPENAI_API_KEY``, ``MMRAG_RERANK_API_KEY``) —
  else any config could send your key to a host of its choosing — unless the caller passes
  ``api_key=`` (used by every remote component of this config) or ``use_env_key=True``, or the
  environment names that very server (``MMRAG_BASE_URL`` …). Keys are never saved.

Where a framework calls :func:`from_dict` for you (a Haystack pipeline loading its components),
grant the same permissions around it: ``with config.trusting(api_key=...): Pipeline.loads(...)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
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
    "TransportSettings": "remote.transport",
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


@dataclasses.dataclass(frozen=True)
class LoadTrust:
    """What the caller of :func:`from_dict` allows the config being loaded (module docstring)."""

    allow_remote_code: bool = False
    use_env_key: bool = False
    api_key: str | None = dataclasses.field(default=None, repr=False)


_LOADING: ContextVar[LoadTrust | None] = ContextVar("mm_rag_config_loading", default=None)
_GRANTED: ContextVar[LoadTrust] = ContextVar("mm_rag_config_granted", default=LoadTrust())


def loading() -> LoadTrust | None:
    """The :class:`LoadTrust` of the :func:`from_dict` call in progress (``None`` outside one)."""
    return _LOADING.get()


@contextlib.contextmanager
def trusting(*, allow_remote_code: bool = False, use_env_key: bool = False, api_key: str | None = None) -> Iterator[None]:
    """Grant every :func:`from_dict` call in this block these permissions (for configs that a
    framework loads for you); components built in code here are not affected."""
    token = _GRANTED.set(LoadTrust(allow_remote_code, use_env_key, api_key))
    try:
        yield
    finally:
        _GRANTED.reset(token)


def from_dict(
    data: Mapping[str, Any], *, allow_remote_code: bool = False, use_env_key: bool = False, api_key: str | None = None,
    **overrides: Any,
) -> Any:
    """Rebuild a component saved by :func:`to_dict`; ``overrides`` replace top-level arguments
    (for what cannot be saved, e.g. ``from_dict(data, llm=my_llm)``). ``allow_remote_code``,
    ``use_env_key`` and ``api_key``: what the config may do (see the module docstring)."""
    outer = _LOADING.get() or _GRANTED.get()
    trust = LoadTrust(allow_remote_code or outer.allow_remote_code, use_env_key or outer.use_env_key,
                      api_key if api_key is not None else outer.api_key)
    nesting("a component config", data)  # first: the walks below then end (a config may contain itself)
    if not trust.allow_remote_code:
        _refuse_remote_code(data)
    token = _LOADING.set(trust)
    try:
        return _build(data, overrides)
    finally:
        _LOADING.reset(token)


def _refuse_remote_code(data: Any) -> None:
    """A :class:`ConfigError` when ``data`` asks for ``trust_remote_code`` anywhere (no recursion:
    a config nested deeper than the stack is walked too)."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, Mapping):
            for key, inner in value.items():
                if key == "trust_remote_code" and inner not in (False, None):
                    raise ConfigError(
                        f"the config asks for trust_remote_code at {where + str(key)!r}: loading a config never runs a "
                        "model's own code; pass from_dict(..., allow_remote_code=True) if you trust it"
                    )
                stack.append((f"{where}{key}.", inner))
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{where}{i}.", inner) for i, inner in enumerate(value))


def _build(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"a component config must be a mapping, got {type(data).__name__}")
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
            return _build(value, {})
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


__all__ = ["REGISTRY", "SECRET_KEYS", "TYPE_KEY", "LoadTrust", "from_dict", "loading", "register", "to_dict", "trusting"]
