"""One exception hierarchy for the whole package.

Every error this library raises on purpose derives from :class:`MMRagError`, so callers can
catch one type. Sub-classes say which layer refused the input.
"""

from __future__ import annotations


class MMRagError(Exception):
    """Base class of every error raised by mm-rag-components."""


class ConfigError(MMRagError, ValueError):
    """An argument or option is invalid (bad value, missing query, unknown mode...)."""


class MediaError(MMRagError):
    """An image or text file could not be read, decoded or validated."""


class ModelError(MMRagError):
    """A model could not be loaded, or it lacks something we need (e.g. yes/no tokens)."""


class StoreError(MMRagError):
    """The vector store refused an operation or holds incompatible data."""


class ParseError(MMRagError):
    """A model's output could not be parsed (raised only where no fallback applies)."""


class BackendError(MMRagError):
    """A remote or local generation/scoring backend failed."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message`` of ``exc``, at most ``limit`` characters.

    Library errors can be screens long (transformers lists every architecture it knows); ours
    stay one readable line.
    """
    text = str(exc).strip()
    first = text.splitlines()[0].strip() if text else ""
    message = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return message if len(message) <= limit else message[: limit - 1] + "…"


__all__ = [
    "one_line",
    "MMRagError",
    "ConfigError",
    "MediaError",
    "ModelError",
    "StoreError",
    "ParseError",
    "BackendError",
]
