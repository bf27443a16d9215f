"""LangChain document compressor for listwise (chain-of-thought) MLLM reranking: convert and delegate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ...generation.base import Generator, generator_for
from ...rerank.listwise import ListwiseRanker, ListwiseResult
from ...rerank.options import ListwiseOptions, Unpack
from .rerank_common import FilterLike, MultimodalReranker


class ListwiseReranker(MultimodalReranker):
    """Rerank documents with one listwise MLLM prompt per window (reasoning, then a JSON ranking).

    Give one backend: a ready core ``reranker``
    (:class:`~mm_rag_components.rerank.listwise.ListwiseRanker`), ``model`` (a local model name or
    directory), ``llm`` (a LangChain chat model that reads images, wrapped in a
    :class:`~.generator.LangChainGenerator`; ``image_format`` is the encoding of the images it
    is sent) or any ``generator``. Other options (``top_n``, ``window_size``, ``step``,
    ``num_permutations``, ``timeout`` …, and ``max_new_tokens``, ``device`` for a local model) go
    to :meth:`ListwiseRanker.create`. ``relevance_filter`` as in :class:`MultimodalReranker`
    (e.g. ``{"score_key": "listwise_score", "threshold": 0.5}``).

    ``relevance_score`` becomes the Borda score in [0, 1]; metadata gets ``listwise_rank``,
    ``listwise_score``, ``listwise_parse_status``, ``listwise_rationale`` and ``listwise_flag``.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        reranker: ListwiseRanker | None = None,
        llm: Any = None,
        generator: Generator | None = None,
        image_format: str | None = None,
        relevance_filter: FilterLike = None,
        **options: Unpack[ListwiseOptions],
    ) -> None:
        from .generator import LangChainGenerator

        llm_options = {} if image_format is None else {"image_format": image_format}
        generator = generator_for(llm, generator, LangChainGenerator, llm_options)
        super().__init__(
            ListwiseRanker.create(model, generator=generator, reranker=reranker, **options),
            relevance_filter=relevance_filter,
        )

    @property
    def ranker(self) -> ListwiseRanker:
        return self.reranker  # type: ignore[return-value]

    @property
    def last_listwise(self) -> ListwiseResult | None:
        """The most recent :class:`ListwiseResult` (per-window statuses, flags, rationales)."""
        return self.last_result.details if self.last_result is not None else None

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, llm: Any = None, **overrides: Any) -> ListwiseReranker:
        """Rebuild from :meth:`to_dict`. A chat model is never saved: pass it again as ``llm``."""
        if llm is not None and isinstance(data, dict) and isinstance(data.get("reranker"), dict):
            saved = data["reranker"].get("generator")
            if not isinstance(saved, dict) or saved.get("type") != "LangChainGenerator":
                raise ConfigError("llm= applies only to a reranker saved with a LangChain chat model")
            data = {**data, "reranker": {**data["reranker"], "generator": {**saved, "llm": llm}}}
        return super().from_dict(data, **overrides)


__all__ = ["ListwiseReranker"]
