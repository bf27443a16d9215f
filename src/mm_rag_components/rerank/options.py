"""The keyword options of the reranker builders, as types: one declaration that the three
frameworks' rerankers share (``**options: Unpack[PointwiseOptions]``), so IDEs, type checkers
and ``help()`` see every option by the core's own name. A test keeps these in step with the core.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from typing_extensions import TypedDict, Unpack

if TYPE_CHECKING:  # pragma: no cover - annotations only; importing this module stays light
    from ..scoring.templates import PointwiseTemplate
    from ..types import Candidate, ImageSource
    from .listwise_prompts import ListwisePrompt
    from .pointwise import Calibrator


class PointwiseOptions(TypedDict, total=False):
    """Options of :meth:`PointwiseRanker.create <mm_rag_components.rerank.pointwise.PointwiseRanker.create>`.

    The ranker's own: ``top_n``, ``fusion_weight``, ``calibration``, ``unscored``. With
    ``model=``, the rest go to :class:`~mm_rag_components.scoring.transformers_scorer.TransformersScorer`.
    """

    top_n: int | None
    fusion_weight: float | None
    calibration: Calibrator | str | Path | None
    unscored: str
    template: str | PointwiseTemplate
    instruction: str | None
    device: str | None
    dtype: Any
    batch_size: int
    vision_batch_size: int | None
    max_length: int | None
    page_text_tokens: int | None
    vision_cache_size: int
    vision_cache_dir: str | Path | None
    vision_cache_max_bytes: int
    image_splitting: bool | None
    max_pixels: int | None
    fast: bool
    local_files_only: bool | None
    trust_remote_code: bool


class ListwiseOptions(TypedDict, total=False):
    """Options of :meth:`ListwiseRanker.create <mm_rag_components.rerank.listwise.ListwiseRanker.create>`.

    The ranker's own: ``top_n`` to ``image_of``. With ``model=``, ``device`` to
    ``local_files_only`` go to :class:`~mm_rag_components.generation.transformers.TransformersGenerator`.
    """

    top_n: int | None
    prompt: str | ListwisePrompt
    window_size: int
    step: int
    num_permutations: int
    seed: int
    max_image_pixels: int | None
    max_text_chars: int | None
    max_rationale_chars: int | None
    timeout: float | None
    max_concurrency: int
    allow_urls: bool
    keep_raw: bool
    image_of: Callable[[Candidate], ImageSource | None] | None
    device: str
    dtype: Any
    max_new_tokens: int
    system_role: bool
    trust_remote_code: bool
    processor_kwargs: Mapping[str, Any] | None
    model_kwargs: Mapping[str, Any] | None
    local_files_only: bool


__all__ = ["ListwiseOptions", "PointwiseOptions", "Unpack"]
