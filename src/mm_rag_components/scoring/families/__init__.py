"""One small adapter per model family (see :mod:`.base` for the interface)."""

from __future__ import annotations

from typing import Any

from .base import Family, ImageLayout

#: ``model_type`` → family, for the families the fast path knows.
FAMILIES: dict[str, str] = {
    "idefics3": "idefics3",
    "smolvlm": "idefics3",
    "llava": "llava",
    "qwen2_vl": "qwen2_vl",
    "qwen2_5_vl": "qwen2_vl",
    "qwen3_vl": "qwen3_vl",
}


def family_for(config: Any) -> Family:
    """The adapter for a model's config: a known VLM family; another VLM (a ``vision_config``)
    gets the generic processor adapter, which scores by the reference path only; else a
    text-only causal LM."""
    model_type = str(getattr(config, "model_type", ""))
    name = FAMILIES.get(model_type)
    if name == "idefics3":
        from .idefics3 import Idefics3Family

        return Idefics3Family(model_type)
    if name == "llava":
        from .llava import LlavaFamily

        return LlavaFamily(model_type)
    if name in ("qwen2_vl", "qwen3_vl"):
        from .qwen_vl import Qwen3VLFamily, QwenVLFamily

        return (Qwen3VLFamily if name == "qwen3_vl" else QwenVLFamily)(model_type)
    if hasattr(config, "vision_config"):
        from .base import ProcessorFamily

        generic = ProcessorFamily(model_type)
        generic.fast = False
        return generic
    from .causal import CausalFamily

    return CausalFamily(model_type)


__all__ = ["FAMILIES", "Family", "ImageLayout", "family_for"]
