"""Text-only causal LMs (Qwen2/3, Llama, SmolLM …): a tokenizer with a chat template, no images."""

from __future__ import annotations

from .base import Family


class CausalFamily(Family):
    name = "causal"


__all__ = ["CausalFamily"]
