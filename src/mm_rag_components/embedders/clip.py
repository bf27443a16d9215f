"""CLIP-style dual encoders (CLIP, SigLIP …) through sentence-transformers."""

from __future__ import annotations

from .base import SentenceTransformerEmbedder


class ClipEmbedder(SentenceTransformerEmbedder):
    """Texts and images in one space, from any sentence-transformers CLIP model or any
    transformers ``CLIPModel`` / ``SiglipModel`` directory, by hub name or local path.

    Nothing loads in ``__init__``; the model loads once, on first use or in :meth:`warm_up`.
    """

    default_model = "sentence-transformers/clip-ViT-B-32"
    required_modalities = frozenset({"text", "image"})
    modalities = required_modalities
