"""LLaVA: ``<image>`` becomes a fixed number of image tokens (patches, maybe CLS); the vision
tower's chosen layer goes through the projector."""

from __future__ import annotations

from typing import Any

from .base import ProcessorFamily


class LlavaFamily(ProcessorFamily):
    name = "llava"

    def image_features(self, model: Any, images: list[Any], device: Any) -> list[Any]:
        import torch

        pixels = self.processor.image_processor(images, return_tensors="pt")["pixel_values"]
        config = model.config
        with torch.inference_mode():
            features = model.get_image_features(
                pixel_values=pixels.to(device, dtype=model.dtype),
                vision_feature_layer=config.vision_feature_layer,
                vision_feature_select_strategy=config.vision_feature_select_strategy,
            ).pooler_output
        return [f.reshape(-1, f.shape[-1]) for f in features]


__all__ = ["LlavaFamily"]
