"""Embedders: CLIP-style dual encoders for images and text, and text-only embedders."""

from .base import Embedder, SentenceTransformerEmbedder
from .clip import ClipEmbedder
from .text import TextEmbedder, installed_minilm_path

__all__ = ["ClipEmbedder", "Embedder", "SentenceTransformerEmbedder", "TextEmbedder", "installed_minilm_path"]
