"""CLIP-style dual encoders (CLIP, SigLIP …) through sentence-transformers."""

from __future__ import annotations

from typing import Any

from .base import SentenceTransformerEmbedder

#: Model types whose text tower pools the last position, so texts must be padded to the
#: tokenizer's full length (as they were in training) for batch-independent embeddings.
_PAD_TO_MAX_LENGTH = frozenset({"siglip", "siglip2"})


class ClipEmbedder(SentenceTransformerEmbedder):
    """Texts and images in one space, from any sentence-transformers CLIP model or any
    transformers ``CLIPModel`` / ``SiglipModel`` directory, by hub name or local path.

    Args: ``model_name_or_path`` (default ``sentence-transformers/clip-ViT-B-32``), ``device``
    (``None``: cuda when available, else cpu), ``dtype`` (``None``, a ``torch.dtype`` or
    ``"float16"``/``"bfloat16"``/``"float32"``), ``batch_size``, ``max_pixels`` (image decoding
    guard), ``local_files_only``, ``trust_remote_code`` (off unless asked).

    Nothing loads in ``__init__``; the model loads once, on first use or in :meth:`warm_up`.
    A model that cannot be loaded, or has no image modality, raises ``ModelError``.
    """

    default_model = "sentence-transformers/clip-ViT-B-32"
    required_modalities = frozenset({"text", "image"})
    modalities = required_modalities

    def _options_for(self, model: Any) -> dict[str, Any]:
        hf_model = getattr(model[0], "model", None) if len(model) else None
        model_type = getattr(getattr(hf_model, "config", None), "model_type", None)
        if model_type in _PAD_TO_MAX_LENGTH:
            return {"processing_kwargs": {"text": {"padding": "max_length", "truncation": True}}}
        return {}


__all__ = ["ClipEmbedder"]
