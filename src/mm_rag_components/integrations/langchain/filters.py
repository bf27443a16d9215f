"""LangChain document compressor for relevance filtering (convert and delegate to the core policy)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import PrivateAttr

from ... import config as mm_config
from ...errors import ConfigError
from ...filters import FilterPolicy, FilterReport, FilterResult
from ...types import FILTER_REASON
from .documents import check_documents, document_to_candidate


class RelevanceFilter(BaseDocumentCompressor):
    """Drop documents that are not relevant enough (see :mod:`mm_rag_components.filters`).

    Pass a ready ``policy`` (:class:`~mm_rag_components.filters.FilterPolicy`) or its options
    (``score_key``, ``threshold``, ``max_k``, ``margin``, ``top_p``, ``temperature``,
    ``min_keep``, ``on_missing``); a misspelt option is a ``ConfigError``. ``score_key="score"``
    reads a document's ``relevance_score`` (else its ``retrieval_score``); any other key is read
    from its metadata. Kept documents stay in input order, as new ``Document`` objects.

    Why documents were dropped: :attr:`last_report` (counts per reason, ``dropped_ids``,
    ``summary()``). For concurrent use call :meth:`filter_documents`, which returns the
    :class:`~mm_rag_components.filters.FilterResult` instead of storing it.
    """

    _policy: FilterPolicy = PrivateAttr()
    _last_report: FilterReport | None = PrivateAttr(default=None)

    def __init__(self, policy: FilterPolicy | None = None, **options: Any) -> None:
        super().__init__()
        self._policy = FilterPolicy.resolve(policy, **options)

    def __repr_args__(self) -> Any:
        return [("policy", self._policy)]

    @property
    def policy(self) -> FilterPolicy:
        return self._policy

    @property
    def last_report(self) -> FilterReport | None:
        """Report of the most recent call (not thread-safe; see :meth:`filter_documents`)."""
        return self._last_report

    def to_dict(self) -> dict[str, Any]:
        return {"class_name": "RelevanceFilter", "policy": mm_config.to_dict(self._policy)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RelevanceFilter:
        if not isinstance(data, dict) or "policy" not in data:
            raise ConfigError("RelevanceFilter.from_dict needs the dict written by to_dict()")
        return cls(policy=mm_config.from_dict(data["policy"]))

    def filter_documents(self, documents: Sequence[Document]) -> tuple[list[Document], FilterResult]:
        """Kept documents (new objects, input order) and the core's full result."""
        docs = check_documents(documents)
        result = self._policy.apply([document_to_candidate(d, i) for i, d in enumerate(docs)])
        kept = [_copy(docs[i], c.metadata) for i, c in zip(result.kept_indices, result.kept)]
        return kept, result

    def compress_documents(
        self, documents: Sequence[Document], query: Any = None, callbacks: Callbacks | None = None
    ) -> list[Document]:
        kept, result = self.filter_documents(documents)
        self._last_report = result.report
        return kept

    async def acompress_documents(
        self, documents: Sequence[Document], query: Any = None, callbacks: Callbacks | None = None
    ) -> list[Document]:
        return self.compress_documents(documents, query)  # cheap arithmetic: no thread needed


def as_policy(value: object) -> FilterPolicy:
    """A :class:`FilterPolicy` from a policy, a :class:`RelevanceFilter` or a mapping of options."""
    if isinstance(value, FilterPolicy):
        return value
    if isinstance(value, RelevanceFilter):
        return value.policy
    if isinstance(value, Mapping):
        return FilterPolicy.from_kwargs(**{str(k): v for k, v in value.items()})
    raise ConfigError(f"a relevance filter must be a FilterPolicy, a RelevanceFilter or its options, got {type(value).__name__}")


def dropped_document(document: Document, metadata: Mapping[str, Any], reason: str) -> Document:
    """A copy of a dropped ``document`` carrying ``filter_reason``."""
    return _copy(document, {**metadata, FILTER_REASON: reason})


def _copy(document: Document, metadata: Mapping[str, Any]) -> Document:
    return Document(id=document.id, page_content=document.page_content, metadata={**document.metadata, **metadata})


__all__ = ["FILTER_REASON", "RelevanceFilter", "as_policy", "dropped_document"]
