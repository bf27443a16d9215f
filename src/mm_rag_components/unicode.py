"""Text as valid Unicode: lone surrogates (which crash tokenizers and UTF-8 encoders) repaired
before text reaches a tokenizer, a hash or the store; undecodable file names kept distinct."""

from __future__ import annotations

import os
import re

from .errors import ConfigError

_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> tuple[str, bool]:
    """``(text, changed)``: ``text`` as valid Unicode. Surrogate pairs are joined into the
    character they encode and lone surrogates become U+FFFD; ``changed`` says whether anything
    was replaced. Linear time; a valid string is returned as is. Call it on any user text (item
    text, metadata, a query) before it reaches a tokenizer, a hash or the store."""
    if not isinstance(text, str):
        raise ConfigError(f"clean_text takes a string, got {type(text).__name__}")
    if text.isascii() or _SURROGATE.search(text) is None:
        return text, False
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace"), True


def clean_path(path: str | os.PathLike[str]) -> tuple[str, bool]:
    """``(text, changed)``: a file path as valid Unicode. Undecodable bytes of a file name
    (``os.walk`` gives them as surrogate escapes) become ``\\xNN`` escapes, so distinct names stay
    distinct; such a name identifies the record but cannot be opened again."""
    text = os.fspath(path)
    if text.isascii() or _SURROGATE.search(text) is None:
        return text, False
    try:
        return os.fsencode(text).decode("utf-8", "backslashreplace"), True
    except UnicodeError:
        return clean_text(text)


__all__ = ["clean_path", "clean_text"]
