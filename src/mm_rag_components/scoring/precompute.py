"""Reranker image features computed while ingesting, so the first query after a restart is warm.

:meth:`MultimodalIndex.ingest_folder(..., precompute=scorer)
<mm_rag_components.index.MultimodalIndex.ingest_folder>` hands every image it reads (new,
changed or unchanged — as its sha256 and raw bytes) to :class:`IngestPrecompute`, which asks the
scorer (e.g. a :class:`~mm_rag_components.scoring.transformers_scorer.TransformersScorer` with a
``vision_cache_dir``) for the features it has not cached yet, under one progress bar.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

from ..errors import ConfigError, MMRagError

logger = logging.getLogger(__name__)


class IngestPrecompute:
    """Feeds ingested images to ``scorer.precompute``; failures become notes, never abort ingest."""

    def __init__(self, scorer: Any, show_progress: bool | None = None) -> None:
        if not callable(getattr(scorer, "precompute", None)):
            raise ConfigError(f"precompute needs a scorer with precompute(images), got {type(scorer).__name__}")
        self.scorer = scorer
        self.show_progress = show_progress
        self.computed = 0
        self._bar: Any = None

    def start(self) -> IngestPrecompute:
        """Load the scorer's model now: a model that cannot load fails before anything is ingested."""
        warm = getattr(self.scorer, "warm_up", None)
        if callable(warm):
            warm()
        return self

    def __call__(self, images: list[tuple[str, Any]]) -> str | None:
        """Precompute ``(sha256, bytes or PIL image)`` pairs; returns a problem to note, or ``None``."""
        if not images:
            return None
        if self._bar is None:
            from ..progress import progress_bar

            self._bar = progress_bar(self.show_progress, total=0, desc="reranker image features", unit="image")
        self._bar.total += len(images)
        self._bar.refresh()
        try:
            self.computed += int(self.scorer.precompute(images, progress=self._bar))
        except MMRagError as exc:
            logger.warning("reranker features not precomputed for %d images: %s", len(images), exc)
            return f"reranker image features not precomputed: {exc}"
        return None

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> IngestPrecompute:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None) -> None:
        self.close()


__all__ = ["IngestPrecompute"]
