"""How a remote component talks to its server: one small, saveable settings object.

:class:`TransportSettings` holds every transport knob of the remote components
(:class:`~mm_rag_components.remote.chat_scorer.OpenAIChatScorer`,
:class:`~mm_rag_components.remote.rerank_endpoint.RerankEndpointScorer`,
:class:`~mm_rag_components.remote.chat_generator.OpenAIChatGenerator`, the parity check): they take
``transport=TransportSettings(...)``, and ``config.to_dict`` saves it as one nested entry.

Three bounds stop a hostile or broken server from holding a caller:

* ``timeout`` — each connect, read or write (what ``httpx.Timeout`` bounds);
* ``deadline`` — one whole call: every try, the waits between tries and the whole answer (a
  server dripping a byte a second, or streaming forever, is cut here);
* ``first_token_timeout`` — a stream's first piece of text (default: ``timeout``).

and two caps bound what a call reads: ``max_response_bytes`` (the body, or a whole stream) and
``max_stream_chunks`` (stream events). Going past any of them is a
:class:`~mm_rag_components.remote.http.LimitExceeded` naming the limit.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..validate import integer, number, positive_int, positive_number

#: The keyword arguments the remote components took before :class:`TransportSettings` (deprecated).
LEGACY_KEYS = ("timeout", "retries", "backoff", "max_backoff", "max_concurrency")


@dataclass(frozen=True)
class TransportSettings:
    """Timeouts, retries and caps of one remote component (see the module docstring).

    ``retries``: extra tries after a 429/5xx answer or a connection failure, waiting
    ``backoff · 2^attempt`` seconds (at most ``max_backoff``, with jitter; a ``Retry-After`` is
    honoured). ``max_concurrency``: requests of one scorer in flight at once.
    """

    timeout: float = 60.0
    deadline: float = 300.0
    first_token_timeout: float | None = None
    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_concurrency: int = 8
    max_response_bytes: int = 16 * 1024 * 1024
    max_stream_chunks: int = 16_384

    def __post_init__(self) -> None:
        checked = {
            "timeout": positive_number("timeout", self.timeout),
            "deadline": positive_number("deadline", self.deadline),
            "first_token_timeout": positive_number("first_token_timeout", self.first_token_timeout, optional=True),
            "retries": integer("retries", self.retries, minimum=0),
            "backoff": number("backoff", self.backoff, minimum=0.0),
            "max_backoff": number("max_backoff", self.max_backoff, minimum=0.0),
            "max_concurrency": positive_int("max_concurrency", self.max_concurrency),
            "max_response_bytes": positive_int("max_response_bytes", self.max_response_bytes),
            "max_stream_chunks": positive_int("max_stream_chunks", self.max_stream_chunks),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @property
    def first_token(self) -> float:
        """Seconds a stream may take to its first piece of text."""
        return self.first_token_timeout if self.first_token_timeout is not None else self.timeout

    def replace(self, **changes: Any) -> TransportSettings:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)


def transport_settings(
    transport: TransportSettings | Mapping[str, Any] | None,
    legacy: Mapping[str, Any],
    *,
    owner: str,
    default: TransportSettings,
    accepted: tuple[str, ...] = LEGACY_KEYS,
) -> TransportSettings:
    """The settings of ``owner``: ``transport`` (a :class:`TransportSettings`, or a mapping of its
    fields), else ``default``; deprecated loose keywords in ``legacy`` (``timeout=``, ``retries=``
    …, ``accepted`` names them) are mapped onto it with a :class:`DeprecationWarning`. Any other
    keyword is a :class:`ConfigError`, and so are both at once."""
    unknown = sorted(set(legacy) - set(accepted))
    if unknown:
        raise ConfigError(f"{owner}: unknown option(s) {', '.join(unknown)}")
    if isinstance(transport, Mapping):
        try:
            transport = TransportSettings(**transport)
        except TypeError as exc:
            raise ConfigError(f"{owner}: transport: {exc}") from None
    if transport is not None and not isinstance(transport, TransportSettings):
        raise ConfigError(f"{owner}: transport must be a TransportSettings, got {type(transport).__name__}")
    if not legacy:
        return transport or default
    if transport is not None:
        raise ConfigError(f"{owner}: give transport= or the deprecated {', '.join(sorted(legacy))}=, not both")
    named = ", ".join(f"{key}={value!r}" for key, value in legacy.items())
    warnings.warn(
        f"{owner}({', '.join(f'{k}=' for k in legacy)}) is deprecated and goes away in the next release: "
        f"pass transport=TransportSettings({named})",
        DeprecationWarning,
        stacklevel=3,
    )
    return default.replace(**legacy)


__all__ = ["LEGACY_KEYS", "TransportSettings", "transport_settings"]
