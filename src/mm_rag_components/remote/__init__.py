"""Scoring through model servers: OpenAI-compatible yes/no log-probabilities
(:class:`OpenAIChatScorer`), rerank endpoints (:class:`RerankEndpointScorer`), an OpenAI-compatible
chat model as a generator (:class:`OpenAIChatGenerator`: answers, listwise), and
:func:`parity` — how far a server's scores are from the local :class:`TransformersScorer`'s.
Every client is configured by one :class:`TransportSettings` (timeouts, a whole-request deadline,
retries, size caps); :class:`UrlPolicy` guards image URLs fetched when ``allow_urls`` is on.

Names resolve lazily; ``httpx`` is the only client library used.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "OpenAIChatScorer": "chat_scorer",
    "RerankEndpointScorer": "rerank_endpoint",
    "OpenAIChatGenerator": "chat_generator",
    "RemotePointScore": "answers",
    "RemoteError": "http",
    "LimitExceeded": "http",
    "DeadlineExceeded": "http",
    "ResponseTooLarge": "http",
    "JsonClient": "http",
    "TransportSettings": "transport",
    "UrlPolicy": "urls",
    "ParityReport": "parity",
    "parity": "parity",
    "dequantised_model_dir": "gguf",
}

#: Moved out of the library: ``mm-rag parity`` is a command (``cli.main(["parity", ...])``).
_DEPRECATED = {"run_parity_command": ("mm_rag_components.cli.parity_commands", "run")}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, _DEPRECATED)

__all__ = list(_LAZY)
