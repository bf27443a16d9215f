"""LlamaIndex's ``SentenceSplitter`` as our :class:`~mm_rag_components.chunking.TextSplitter`.

:func:`mm_rag_components.chunking.default_splitter` loads this module lazily, so the core never
imports LlamaIndex itself. ``MultimodalIndex`` runs it behind a
:class:`~mm_rag_components.chunking.GuardedSplitter`, which falls back to the plain splitter when
it fails (e.g. NLTK's regex time limit on pathological text).
"""

from __future__ import annotations

from llama_index.core.node_parser import SentenceSplitter


def sentence_splitter(chunk_size: int, chunk_overlap: int) -> SentenceSplitter:
    """A ``SentenceSplitter`` with ``chunk_size``/``chunk_overlap`` in its tokenizer's tokens
    (its ``split_text(text) -> list[str]`` is the :class:`TextSplitter` protocol)."""
    return SentenceSplitter(chunk_size=chunk_size, chunk_overlap=min(chunk_overlap, chunk_size // 2))


__all__ = ["SentenceSplitter", "sentence_splitter"]
