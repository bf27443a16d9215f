"""LlamaIndex node postprocessor for listwise (chain-of-thought) MLLM reranking: convert and delegate."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle

from ...errors import ConfigError
from ...rerank.listwise import DEFAULT_MAX_IMAGE_PIXELS, ListwiseGenerator, ListwiseRanker, ListwiseResult
from ...rerank.listwise_prompts import COT_PROMPT, ListwisePrompt
from ...types import Candidate
from .rerank_common import begin_rerank, end_rerank


class ListwiseReranker(BaseNodePostprocessor):
    """Rerank nodes with one listwise MLLM prompt per window (CoTRR-style reasoning, then JSON).

    Give exactly one backend: ``model`` (a local VLM name or directory, run by
    :class:`~mm_rag_components.rerank.generators.TransformersGenerator` with ``generator_kwargs``
    such as ``max_new_tokens``, ``device``), ``llm`` (a LlamaIndex LLM that accepts image blocks,
    wrapped by :class:`~mm_rag_components.rerank.generators.LlamaIndexGenerator`), or any
    ``generator`` with ``generate(turns) -> str``. The ranking options (``window_size``, ``step``,
    ``num_permutations``, ``seed``, ``timeout``, ``max_image_pixels``, ``prompt`` …) are those of
    :class:`~mm_rag_components.rerank.listwise.ListwiseRanker`.

    The node score becomes the Borda score in [0, 1]; metadata gets ``listwise_rank``,
    ``listwise_score``, ``listwise_parse_status``, ``listwise_rationale`` and ``listwise_flag``
    (hidden from LLM prompts and embeddings). ``last_result`` keeps the last
    :class:`~mm_rag_components.rerank.listwise.ListwiseResult` (windows, raw flags) for inspection.
    """

    top_n: Optional[int] = Field(default=None, description="Keep this many nodes (all when None).")
    _ranker: ListwiseRanker = PrivateAttr()
    _model_name: str = PrivateAttr(default="listwise")
    _last_result: Optional[ListwiseResult] = PrivateAttr(default=None)

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        llm: Any = None,
        generator: ListwiseGenerator | None = None,
        top_n: int | None = None,
        prompt: ListwisePrompt = COT_PROMPT,
        window_size: int = 10,
        step: int = 5,
        num_permutations: int = 1,
        seed: int = 0,
        timeout: float | None = None,
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        max_text_chars: int | None = 1000,
        max_rationale_chars: int | None = 2000,
        max_concurrency: int = 4,
        allow_urls: bool = False,
        keep_raw: bool = False,
        **generator_kwargs: Any,
    ) -> None:
        if sum(x is not None for x in (model, llm, generator)) != 1:
            raise ConfigError("give exactly one of model (name or directory), llm or generator")
        if top_n is not None and top_n < 1:
            raise ConfigError(f"top_n must be >= 1, got {top_n}")
        super().__init__(top_n=top_n)
        if model is not None:
            from ...rerank.generators import TransformersGenerator

            generator = TransformersGenerator(model, **generator_kwargs)
            self._model_name = str(model)
        elif llm is not None:
            from ...rerank.generators import LlamaIndexGenerator

            generator = LlamaIndexGenerator(llm, **generator_kwargs)
            self._model_name = str(getattr(getattr(llm, "metadata", None), "model_name", None) or type(llm).__name__)
        else:
            if generator_kwargs:
                raise ConfigError(f"generator options {sorted(generator_kwargs)} apply only with model= or llm=")
            self._model_name = type(generator).__name__
        self._ranker = ListwiseRanker(
            generator,  # type: ignore[arg-type]
            prompt=prompt,
            window_size=window_size,
            step=step,
            num_permutations=num_permutations,
            seed=seed,
            timeout=timeout,
            max_image_pixels=max_image_pixels,
            max_text_chars=max_text_chars,
            max_rationale_chars=max_rationale_chars,
            max_concurrency=max_concurrency,
            allow_urls=allow_urls,
            keep_raw=keep_raw,
        )

    @classmethod
    def class_name(cls) -> str:
        return "ListwiseReranker"

    @property
    def ranker(self) -> ListwiseRanker:
        """The framework-free ranker doing the work."""
        return self._ranker

    @property
    def last_result(self) -> ListwiseResult | None:
        """The most recent ranking (per-window statuses, flags, rationales); not thread-safe."""
        return self._last_result

    def _start(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None):
        return begin_rerank(nodes, query_bundle, top_n=self.top_n, model_name=self._model_name, who="ListwiseReranker")

    def _end(self, nodes: list[NodeWithScore], candidates: list[Candidate], result: ListwiseResult) -> list[NodeWithScore]:
        self._last_result = result
        for index in result.order:
            candidates[index].metadata.update(self._ranker.result_metadata(result, index))
        order = result.order[: self.top_n] if self.top_n is not None else result.order
        return end_rerank(nodes, candidates, ((candidates[i], result.scores[i]) for i in order))

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if not nodes:
            return []
        query, candidates = self._start(nodes, query_bundle)
        return self._end(nodes, candidates, self._ranker.rank(query, candidates))

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if not nodes:
            return []
        query, candidates = self._start(nodes, query_bundle)
        return self._end(nodes, candidates, await self._ranker.arank(query, candidates))


__all__ = ["ListwiseReranker"]
