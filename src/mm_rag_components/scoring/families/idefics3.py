"""Idefics3 / SmolVLM: an image becomes ``<fake><global-img><image>×n<fake>`` — or, with image
splitting, one such block per tile plus the global view — and the vision tower runs per tile."""

from __future__ import annotations

from typing import Any

from .base import ImageLayout, ProcessorFamily


class Idefics3Family(ProcessorFamily):
    name = "idefics3"

    def load(self, source: str, kwargs: dict[str, Any], config: Any, image_splitting: bool | None) -> None:
        super().load(source, kwargs, config, image_splitting)
        image_processor = self.processor.image_processor
        if image_splitting is not None:
            image_processor.do_image_splitting = bool(image_splitting)
        self.splitting = bool(getattr(image_processor, "do_image_splitting", False))
        self._by_tiles: dict[tuple[int, int], tuple[int, ...]] = {}

    def _images_arg(self, images: list[Any]) -> Any:
        return [images]  # one prompt, its images as a nested list

    def layout(self, image: Any) -> ImageLayout:
        if not self.splitting:
            return super().layout(image)
        width, height = image.size
        _, rows, cols = self.processor.image_processor.get_number_of_image_patches(height, width)
        ids = self._by_tiles.get((rows, cols))
        if ids is None:
            text = self.processor.replace_image_token({"rows": [[rows]], "cols": [[cols]]}, 0)
            ids = tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            self._by_tiles[(rows, cols)] = ids
        return ImageLayout(ids, ids.count(self.image_token_id))

    def image_features(self, model: Any, images: list[Any], device: Any) -> list[Any]:
        import torch

        pixels = self.processor.image_processor([[im] for im in images], return_tensors="pt")
        inputs = {"pixel_values": pixels["pixel_values"].to(device, dtype=model.dtype)}
        if pixels.get("pixel_attention_mask") is not None:
            inputs["pixel_attention_mask"] = pixels["pixel_attention_mask"].to(device)
        with torch.inference_mode():
            features = model.get_image_features(**inputs).pooler_output  # one (tiles·n, hidden) per image
        return [f.reshape(-1, f.shape[-1]) for f in features]


__all__ = ["Idefics3Family"]
