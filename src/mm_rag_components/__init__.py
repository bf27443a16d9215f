"""mm-rag-components: plug-in components for multimodal retrieval-augmented generation.

Importing the package is cheap: torch, transformers and chromadb load only when a class that
needs them is first used. Public names resolve lazily through :func:`__getattr__`.

The top level holds the framework-free core. Each framework's adapters live in its own package,
under the same names in each: ``mm_rag_components.integrations.llama_index`` (``MultimodalRetriever``,
``PointwiseReranker``, ``ListwiseReranker``, ``RelevanceFilter``), ``…integrations.haystack`` and
``…integrations.langchain``.
"""

from __future__ import annotations

from ._lazy import lazy_attributes
from .errors import (
    BackendError,
    ConfigError,
    MediaError,
    MMRagError,
    ModelError,
    ParseError,
    StoreError,
)
from .types import Candidate, Item, Query

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_LAZY: dict[str, str] = {
    "load_image": "media",
    "content_hash": "media",
    "ClipEmbedder": "embedders",
    "TextEmbedder": "embedders",
    "Embedder": "embedders",
    "installed_minilm_path": "embedders",
    "ChromaStore": "store",
    "MultimodalIndex": "index",
    "IngestReport": "index",
    "TransformersScorer": "scoring.transformers_scorer",
    "OpenAIChatScorer": "remote",
    "RerankEndpointScorer": "remote",
    "OpenAIChatGenerator": "remote",
    "TransformersGenerator": "generation",
    "Generator": "generation",
    "ChatTurn": "generation",
    "TransportSettings": "remote",
    "ScoreCache": "scoring.cache",
    "CachedScorer": "scoring.cache",
    "PointwiseTemplate": "scoring.templates",
    "Calibration": "calibration",
    "fit_calibration": "calibration",
    "expected_calibration_error": "calibration",
    "FilterPolicy": "filters",
    "PointwiseRanker": "rerank",
    "ListwiseRanker": "rerank",
    "Reranker": "rerank",
    "RerankResult": "rerank",
    "MultimodalAnswerer": "answer",
    "Answer": "answer",
    "train_reranker": "training",
    "TrainConfig": "training",
    "retrieve": "retrieval",
    "RetrievalOptions": "retrieval",
}


#: LlamaIndex adapters were importable from the top level, beside the core rankers of similar
#: names (``PointwiseReranker`` vs ``PointwiseRanker``); they now come from their framework package.
_LLAMA_INDEX = "mm_rag_components.integrations.llama_index"
_DEPRECATED: dict[str, tuple[str, str]] = {
    name: (_LLAMA_INDEX, name) for name in ("MultimodalRetriever", "PointwiseReranker", "ListwiseReranker", "RelevanceFilter")
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, _DEPRECATED)

__all__ = [
    "BackendError",
    "Candidate",
    "ConfigError",
    "Item",
    "MMRagError",
    "MediaError",
    "ModelError",
    "ParseError",
    "Query",
    "StoreError",
    "__version__",
    *_LAZY,
]
