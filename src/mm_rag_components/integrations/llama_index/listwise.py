"""LlamaIndex node postprocessor for listwise (chain-of-thought) MLLM reranking: convert and delegate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...generation.base import Generator, generator_for
from ...rerank.listwise import ListwiseRanker, ListwiseResult
from ...rerank.options import ListwiseOptions, Unpack
from .rerank_common import RerankPostprocessor


class ListwiseReranker(RerankPostprocessor):
    """Rerank nodes with one listwise MLLM prompt per window (reasoning, then a JSON ranking).

    Give one backend: a ready core ``reranker``
    (:class:`~mm_rag_components.rerank.listwise.ListwiseRanker`), ``model`` (a local model name or
    directory), ``llm`` (a LlamaIndex LLM that accepts image blocks; ``image_format`` and
    ``chat_kwargs`` go to its generator) or any ``generator``. Other options (``top_n``,
    ``window_size``, ``step``, ``num_permutations``, ``timeout`` …, and ``max_new_tokens``,
    ``device`` for a local model) go to :meth:`ListwiseRanker.create`.

    The node score becomes the Borda score in [0, 1]; metadata gets ``listwise_rank``,
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
        chat_kwargs: dict[str, Any] | None = None,
        **options: Unpack[ListwiseOptions],
    ) -> None:
        from .generator import LlamaIndexGenerator

        llm_options = {**({"image_format": image_format} if image_format else {}), **(chat_kwargs or {})}
        generator = generator_for(llm, generator, LlamaIndexGenerator, llm_options)
        super().__init__(ListwiseRanker.create(model, generator=generator, reranker=reranker, **options))

    @classmethod
    def class_name(cls) -> str:
        return "ListwiseReranker"

    @property
    def ranker(self) -> ListwiseRanker:
        return self.reranker  # type: ignore[return-value]

    @property
    def last_listwise(self) -> ListwiseResult | None:
        """The most recent :class:`ListwiseResult` (per-window statuses, flags, rationales)."""
        return self.last_result.details if self.last_result is not None else None


__all__ = ["ListwiseReranker"]
