"""Shared pieces of the ingest-hardening tests: generated inputs and a client proxy with a small
maximum batch size (the per-case time limit is ``bounds.time_limit``). No tests here."""

from __future__ import annotations

import io
import string
from typing import Any

from hypothesis import strategies as st
from PIL import Image

# --- generated text ------------------------------------------------------------------------------

SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
#: Any code point, lone surrogates included (hypothesis leaves them out by default).
ANY_CHAR = st.one_of(st.characters(), SURROGATES)
WORDS = st.sampled_from(["red", "circle", "blue", "square", "the", "cat.", "dog!", "ok?", "a", "x" * 300, "\u00e9t\u00e9", "\u6f22\u5b57\u3002"])


@st.composite
def pathological_text(draw: st.DrawFn, max_repeat: int = 30_000) -> str:
    """Text built from runs: long runs of one character (spaces, newlines, dots, letters,
    punctuation, CJK), words, and random characters — what breaks regex splitters."""
    parts = draw(
        st.lists(
            st.one_of(
                st.tuples(st.sampled_from([" ", "\n", ".", "a", "\t", "!", "^", "\u3002", "-", "\u00a0", "\r\n"]),
                          st.integers(1, max_repeat)).map(lambda p: p[0] * p[1]),
                st.lists(WORDS, max_size=40).map(" ".join),
                st.text(alphabet=st.characters(), max_size=60),
            ),
            min_size=1,
            max_size=6,
        )
    )
    return "".join(parts)


def png(colour: tuple[int, int, int], size: tuple[int, int] = (12, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


COLOURS = [(220, 30, 30), (30, 170, 60), (30, 60, 220), (235, 210, 40), (10, 10, 10), (200, 200, 200)]
NAME_CHARS = string.ascii_lowercase + string.digits


# --- a client whose maximum batch size is small, and which checks every call against it -------

class _CheckedCollection:
    def __init__(self, collection: Any, limit: int, calls: list[tuple[str, int]]) -> None:
        self._collection, self._limit, self._calls = collection, limit, calls

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    def _checked(self, what: str, fn: Any, **kwargs: Any) -> Any:
        ids = kwargs.get("ids")
        where = kwargs.get("where") or {}
        values = next(iter(where.values()), None) if where else None
        size = len(ids) if ids is not None else len(values["$in"]) if isinstance(values, dict) and "$in" in values else 0
        self._calls.append((what, size))
        if size > self._limit:
            raise AssertionError(f"{what} of {size} records is over the maximum batch size {self._limit}")
        if kwargs.get("limit") is not None and kwargs["limit"] > self._limit:
            raise AssertionError(f"{what} asks for {kwargs['limit']} records, over {self._limit}")
        return fn(**kwargs)

    def upsert(self, **kwargs: Any) -> Any:
        return self._checked("upsert", self._collection.upsert, **kwargs)

    def get(self, **kwargs: Any) -> Any:
        return self._checked("get", self._collection.get, **kwargs)

    def delete(self, **kwargs: Any) -> Any:
        return self._checked("delete", self._collection.delete, **kwargs)


class SmallBatchClient:
    """Wraps a chromadb client: ``get_max_batch_size()`` answers ``limit`` and every upsert, get
    or delete with more ids than that fails the test."""

    def __init__(self, client: Any, limit: int) -> None:
        self._client, self.limit = client, limit
        self.calls: list[tuple[str, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_max_batch_size(self) -> int:
        return self.limit

    def get_collection(self, *args: Any, **kwargs: Any) -> Any:
        return _CheckedCollection(self._client.get_collection(*args, **kwargs), self.limit, self.calls)

    def get_or_create_collection(self, *args: Any, **kwargs: Any) -> Any:
        return _CheckedCollection(self._client.get_or_create_collection(*args, **kwargs), self.limit, self.calls)
