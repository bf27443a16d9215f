"""Text into chunks for embedding: a splitter protocol, a plain splitter, and a guard.

* :class:`TextSplitter` — anything with ``split_text(text) -> list[str]`` (LlamaIndex's
  ``SentenceSplitter`` is one; :func:`default_splitter` returns it).
* :class:`PlainSplitter` — our own linear-time fallback: word windows of about ``chunk_size``
  tokens that prefer to end at a sentence or paragraph end, with ``chunk_overlap`` tokens
  repeated. Memory is bounded by one window; a word longer than a window is cut.
* :class:`GuardedSplitter` — runs a primary splitter and falls back to the plain one when the
  primary raises (a regex time limit, a tokenizer panic …), returns something that is not a list
  of strings, or would get a text longer than ``max_primary_chars``. Identical chunks are dropped
  and at most ``max_chunks`` are kept. Every fallback and cut is logged and returned as a note in
  :class:`Split`: never silent.

The core never imports LlamaIndex at module level; :func:`default_splitter` loads the adapter in
:mod:`mm_rag_components.integrations.llama_index.splitter` when it is first needed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .errors import ConfigError, MediaError
from .validate import integer

logger = logging.getLogger(__name__)

#: Default for ``max_chunks``: chunks kept from one text.
DEFAULT_MAX_CHUNKS_PER_FILE = 10_000
#: Default for ``max_primary_chars``: longer texts go straight to the plain splitter.
DEFAULT_MAX_PRIMARY_CHARS = 1_000_000
#: The plain splitter's token estimate: a token is at most this many characters ...
CHARS_PER_TOKEN = 4
#: ... and a word counts as 4/3 tokens.
WORDS_PER_TOKEN = 0.75

_WORD = re.compile(r"\S+")
_SENTENCE_END = frozenset(".!?;:。！？；")
_CLOSERS = "\"')]}»”’"


@runtime_checkable
class TextSplitter(Protocol):
    """Splits one text into chunks (LlamaIndex's ``SentenceSplitter`` fits)."""

    def split_text(self, text: str) -> list[str]: ...


@dataclass
class Split:
    """A guarded split: the chunks, identical chunks dropped, and notes on what the guard did."""

    chunks: list[str]
    duplicates: int = 0
    notes: list[str] = field(default_factory=list)


class PlainSplitter:
    """Linear-time word windows of about ``chunk_size`` tokens, ``chunk_overlap`` tokens shared.

    Tokens are estimated (at most :data:`CHARS_PER_TOKEN` characters, 4/3 tokens a word), so a
    window holds at most ``chunk_size * 3/4`` words and ``chunk_size * 4`` characters. A full
    window ends after the last word in its second half that ends a sentence or a paragraph;
    words are joined by single spaces.
    """

    def __init__(self, chunk_size: int = 60, chunk_overlap: int = 16) -> None:
        self.chunk_size = integer("chunk_size", chunk_size, minimum=1)
        self.chunk_overlap = integer("chunk_overlap", chunk_overlap, minimum=0)
        self.max_words = max(1, int(chunk_size * WORDS_PER_TOKEN))
        self.max_chars = max(8, chunk_size * CHARS_PER_TOKEN)
        # at most a quarter of a window is repeated, so every window brings new words
        self.overlap_words = min(int(chunk_overlap * WORDS_PER_TOKEN), self.max_words // 4)

    def __repr__(self) -> str:
        return f"PlainSplitter(chunk_size={self.chunk_size}, chunk_overlap={self.chunk_overlap})"

    def split_text(self, text: str) -> list[str]:
        if not isinstance(text, str):
            raise ConfigError(f"split_text takes a string, got {type(text).__name__}")
        chunks: list[str] = []
        words: list[str] = []
        ends: list[bool] = []
        width = -1  # characters of " ".join(words)
        for word, ends_sentence in self._words(text):
            while words and (len(words) >= self.max_words or width + 1 + len(word) > self.max_chars):
                words, ends = self._emit(words, ends, chunks)
                width = sum(len(w) for w in words) + len(words) - 1
            words.append(word)
            ends.append(ends_sentence)
            width += len(word) + 1
        if words:
            chunks.append(" ".join(words))
        return chunks

    def _words(self, text: str) -> Iterator[tuple[str, bool]]:
        """Words (cut to ``max_chars``), each with whether a sentence or paragraph ends after it."""
        previous: str | None = None
        previous_end = 0
        for match in _WORD.finditer(text):
            if previous is not None:
                yield from self._pieces(previous, text.count("\n", previous_end, match.start()) >= 2)
            previous, previous_end = match.group(), match.end()
        if previous is not None:
            yield from self._pieces(previous, True)

    def _pieces(self, word: str, paragraph_end: bool) -> Iterator[tuple[str, bool]]:
        ends = paragraph_end or word.rstrip(_CLOSERS)[-1:] in _SENTENCE_END
        if len(word) <= self.max_chars:
            yield word, ends
            return
        for start in range(0, len(word), self.max_chars):
            yield word[start : start + self.max_chars], ends and start + self.max_chars >= len(word)

    def _emit(self, words: list[str], ends: list[bool], chunks: list[str]) -> tuple[list[str], list[bool]]:
        """Emit one chunk from a full window; return the words carried into the next one."""
        cut = len(words)
        for i in range(len(words) - 2, len(words) // 2 - 1, -1):
            if ends[i]:
                cut = i + 1
                break
        chunks.append(" ".join(words[:cut]))
        start, budget = cut, self.max_chars // 4
        while start > 1 and cut - start < self.overlap_words and len(words[start - 1]) < budget:
            start -= 1
            budget -= len(words[start]) + 1
        start = max(start, 1)  # the window always shrinks: linear time, no endless loop
        return words[start:], ends[start:]


def _is_panic(exc: BaseException) -> bool:
    """pyo3's ``PanicException`` (a Rust tokenizer's panic) derives from ``BaseException``."""
    return type(exc).__name__ == "PanicException"


class GuardedSplitter:
    """A primary splitter that can fail, backed by a :class:`PlainSplitter` (see module doc).

    ``primary=None`` uses the fallback alone. ``max_chunks`` bounds the chunks kept from one text
    (``None``: no bound); ``max_primary_chars`` sends longer texts to the fallback directly.
    """

    def __init__(
        self,
        primary: TextSplitter | None = None,
        *,
        fallback: TextSplitter | None = None,
        max_chunks: int | None = DEFAULT_MAX_CHUNKS_PER_FILE,
        max_primary_chars: int | None = DEFAULT_MAX_PRIMARY_CHARS,
    ) -> None:
        for name, value in (("primary", primary), ("fallback", fallback)):
            if value is not None and not callable(getattr(value, "split_text", None)):
                raise ConfigError(f"{name} splitter must have a split_text(text) method, got {type(value).__name__}")
        self.primary = primary
        self.fallback = fallback if fallback is not None else PlainSplitter()
        self.max_chunks = integer("max_chunks", max_chunks, minimum=1, optional=True)
        self.max_primary_chars = integer("max_primary_chars", max_primary_chars, minimum=1, optional=True)

    def __repr__(self) -> str:
        return f"GuardedSplitter({type(self.primary).__name__}, fallback={self.fallback!r}, max_chunks={self.max_chunks})"

    def split_text(self, text: str) -> list[str]:
        return self.split(text).chunks

    def split(self, text: str) -> Split:
        """Split ``text``; never raises for a string input unless the fallback itself fails
        (:class:`MediaError`)."""
        if not isinstance(text, str):
            raise ConfigError(f"split takes a string, got {type(text).__name__}")
        notes: list[str] = []
        chunks = self._primary_split(text, notes) if self.primary is not None else None
        if chunks is None:
            try:
                chunks = _strings(self.fallback.split_text(text))
            except Exception as exc:  # noqa: BLE001 - a user's fallback
                raise MediaError(f"the fallback splitter failed: {type(exc).__name__}: {exc}") from exc
        kept = list(dict.fromkeys(c for c in chunks if c.strip()))
        duplicates = sum(1 for c in chunks if c.strip()) - len(kept)
        if self.max_chunks is not None and len(kept) > self.max_chunks:
            notes.append(f"kept the first {self.max_chunks:,} of {len(kept):,} chunks (max_chunks_per_file)")
            kept = kept[: self.max_chunks]
        return Split(kept, duplicates, notes)

    def _primary_split(self, text: str, notes: list[str]) -> list[str] | None:
        name = type(self.primary).__name__
        if self.max_primary_chars is not None and len(text) > self.max_primary_chars:
            notes.append(
                f"{len(text):,} characters is over max_primary_chars={self.max_primary_chars:,}; "
                f"split by {type(self.fallback).__name__} instead of {name}"
            )
            return None
        try:
            chunks = _strings(self.primary.split_text(text))  # type: ignore[union-attr]
            if text.strip() and not any(c.strip() for c in chunks):
                raise ValueError("it returned no chunks for a non-empty text")
            return chunks
        except Exception as exc:  # noqa: BLE001 - any failure of the primary falls back
            failure: BaseException = exc
        except BaseException as exc:
            if not _is_panic(exc):
                raise
            failure = exc
        message = str(failure).strip().splitlines()[0][:200] if str(failure).strip() else ""
        note = f"{name} failed ({type(failure).__name__}: {message}); split by {type(self.fallback).__name__} instead"
        logger.warning(note)
        notes.append(note)
        return None


def _strings(chunks: Any) -> list[str]:
    if not isinstance(chunks, (list, tuple)) or not all(isinstance(c, str) for c in chunks):
        raise TypeError(f"split_text returned {type(chunks).__name__}, not a list of strings")
    return list(chunks)


def default_splitter(chunk_size: int, chunk_overlap: int) -> TextSplitter:
    """LlamaIndex's ``SentenceSplitter`` (``chunk_size``/``chunk_overlap`` in its tokens), loaded
    lazily; a :class:`PlainSplitter` with a logged warning when llama-index is not installed."""
    try:
        from .integrations.llama_index.splitter import sentence_splitter
    except ImportError as exc:
        logger.warning("llama-index is not installed (%s); texts are split by the plain splitter", exc)
        return PlainSplitter(chunk_size, chunk_overlap)
    return sentence_splitter(chunk_size, chunk_overlap)


__all__ = [
    "DEFAULT_MAX_CHUNKS_PER_FILE",
    "DEFAULT_MAX_PRIMARY_CHARS",
    "GuardedSplitter",
    "PlainSplitter",
    "Split",
    "TextSplitter",
    "default_splitter",
]
