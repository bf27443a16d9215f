"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL.

* The chat template writes ``<|vision_start|><|image_pad|><|vision_end|>`` per image; the pad
  becomes ``t·h·w / merge²`` pads, from the image's patch grid (``smart_resize`` of its size).
* Positions are multimodal rotary positions (M-RoPE): three rows (time, height, width). Text
  advances all three by one per token; an image's tokens take ``start + (t, row, col)`` of the
  merged grid, and the text after it resumes at ``start + max(rows, cols)`` — so positions are
  not ``0..n-1`` and must be computed for each full sequence (:func:`mrope_positions`).
* Qwen3-VL adds DeepStack: features of some vision layers are added to the hidden states of the
  first decoder layers at the image positions; they travel with the image features.

The processor classes want torchvision (for video); without it, inputs are prepared from the
PIL image processor and the tokenizer — the same ids the processor would produce.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ...errors import ModelError
from .base import Family, ImageLayout, _plain

logger = logging.getLogger(__name__)


class ChatTemplate:
    """Stands in for a processor that cannot be built: renders its chat template with the tokenizer."""

    def __init__(self, tokenizer: Any, chat_template: str) -> None:
        self.tokenizer = tokenizer
        self.chat_template = chat_template

    def apply_chat_template(self, messages: list[dict[str, Any]], tokenize: bool = False, add_generation_prompt: bool = True, **kwargs: Any) -> str:
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.chat_template, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs
        )


class QwenVLFamily(Family):
    """Qwen2-VL / Qwen2.5-VL."""

    name = "qwen2_vl"
    multimodal = True
    model_class = "AutoModelForImageTextToText"

    def load(self, source: str, kwargs: dict[str, Any], config: Any, image_splitting: bool | None) -> None:
        from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

        self.config = config
        self.merge = int(config.vision_config.spatial_merge_size)
        self.processor: Any = None
        try:
            self.processor = AutoProcessor.from_pretrained(source, **kwargs)
            self.tokenizer, self.image_processor, self.chat = self.processor.tokenizer, self.processor.image_processor, self.processor
        except Exception as exc:  # noqa: BLE001 - e.g. the video processor needs torchvision
            logger.info("%s: processor unavailable (%s); using the PIL image processor and the tokenizer", source, exc)
            self.tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            self.image_processor = AutoImageProcessor.from_pretrained(source, **kwargs)
            template = getattr(self.tokenizer, "chat_template", None) or _processor_chat_template(source, kwargs)
            self.chat = ChatTemplate(self.tokenizer, template) if template else None
        self.image_token = str(getattr(self.processor, "image_token", None) or getattr(self.tokenizer, "image_token", None) or "<|image_pad|>")
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(self.image_token)
        if self.image_token_id != getattr(config, "image_token_id", self.image_token_id):
            raise ModelError(f"the tokenizer's {self.image_token} is id {self.image_token_id}, the model expects {config.image_token_id}")

    def settings(self) -> dict[str, Any]:
        keys = ("size", "patch_size", "merge_size", "temporal_patch_size", "image_mean", "image_std", "resample", "do_resize")
        return {"family": self.name, **{k: _plain(getattr(self.image_processor, k, None)) for k in keys}}

    # images ----------------------------------------------------------------------------------
    def layout(self, image: Any) -> ImageLayout:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        processor = self.image_processor
        patch, merge = int(processor.patch_size), int(processor.merge_size)
        size = processor.size
        width, height = image.size
        if getattr(processor, "do_resize", True):
            height, width = smart_resize(height, width, factor=patch * merge, min_pixels=size["shortest_edge"], max_pixels=size["longest_edge"])
        grid = (1, height // patch, width // patch)
        slots = grid[1] * grid[2] // merge**2
        return ImageLayout((self.image_token_id,) * slots, slots, grid)

    def _vision(self, model: Any, images: list[Any], device: Any) -> tuple[Any, Any]:
        import torch

        pixels = self.image_processor(images, return_tensors="pt")
        with torch.inference_mode():
            out = model.get_image_features(pixels["pixel_values"].to(device, dtype=model.dtype), pixels["image_grid_thw"].to(device))
        return out, pixels["image_grid_thw"]

    def image_features(self, model: Any, images: list[Any], device: Any) -> list[Any]:
        out, _ = self._vision(model, images, device)
        return list(out.pooler_output)

    def reference_inputs(self, text: str, images: list[Any]) -> dict[str, Any]:
        if self.processor is not None:
            return dict(self.processor(text=[text], images=images or None, return_tensors="pt"))
        import torch

        extra: dict[str, Any] = {}
        if images:
            pixels = self.image_processor(images, return_tensors="pt")
            counts = [int(g.prod()) // self.merge**2 for g in pixels["image_grid_thw"]]
            pieces = text.split(self.image_token)
            if len(pieces) != len(counts) + 1:
                raise ModelError(f"{len(pieces) - 1} image placeholders for {len(counts)} images")
            text = pieces[0] + "".join(self.image_token * n + piece for n, piece in zip(counts, pieces[1:]))
            extra = {"pixel_values": pixels["pixel_values"], "image_grid_thw": pixels["image_grid_thw"]}
        inputs = dict(self.tokenizer([text], add_special_tokens=False, return_tensors="pt"))
        inputs["mm_token_type_ids"] = (inputs["input_ids"] == self.image_token_id).to(torch.int32)
        return {**inputs, **extra}

    # sequence --------------------------------------------------------------------------------
    def positions(self, ids: list[int], layouts: list[ImageLayout]) -> Any:
        return mrope_positions(ids, self.image_token_id, [lay.grid for lay in layouts], self.merge)


class Qwen3VLFamily(QwenVLFamily):
    """Qwen3-VL: Qwen2-VL's sequence layout plus DeepStack features."""

    name = "qwen3_vl"

    def image_features(self, model: Any, images: list[Any], device: Any) -> list[Any]:
        import torch

        out, _ = self._vision(model, images, device)
        deep = out.deepstack_features or []
        return [torch.stack([main, *(layer[i] for layer in deep)]) for i, main in enumerate(out.pooler_output)]

    def extra_inputs(self, slot_mask: Any, features: list[Any]) -> dict[str, Any]:
        import torch

        if not features or features[0].dim() < 3 or features[0].shape[0] < 2:
            return {}
        layers = features[0].shape[0] - 1
        return {
            "visual_pos_masks": slot_mask,
            "deepstack_visual_embeds": [torch.cat([f[k] for f in features]) for k in range(1, layers + 1)],
        }


def mrope_positions(ids: list[int], image_token_id: int, grids: list[Any], merge: int) -> Any:
    """``(3, len(ids))`` M-RoPE position ids of one full sequence (as the model's ``get_rope_index``
    computes them for images): a run of image tokens takes its merged grid's (t, row, col) offset
    by the current position, which then advances by ``max(rows, cols)``; text advances by one."""
    import torch

    out = torch.empty((3, len(ids)), dtype=torch.long)
    current, i, k = 0, 0, 0
    while i < len(ids):
        if ids[i] == image_token_id:
            t, h, w = grids[k]
            k += 1
            rows, cols = h // merge, w // merge
            n = t * rows * cols
            grid = torch.stack(torch.meshgrid(torch.arange(t), torch.arange(rows), torch.arange(cols), indexing="ij")).reshape(3, -1)
            out[:, i : i + n] = grid + current
            current += max(rows, cols)
            i += n
            continue
        j = i
        while j < len(ids) and ids[j] != image_token_id:
            j += 1
        out[:, i:j] = torch.arange(current, current + j - i)
        current += j - i
        i = j
    return out


def _processor_chat_template(source: str, kwargs: dict[str, Any]) -> str | None:
    """The chat template a processor would carry (``chat_template.jinja`` or ``.json``)."""
    from transformers.utils import cached_file

    options = {"local_files_only": kwargs.get("local_files_only", False), "_raise_exceptions_for_missing_entries": False}
    for name in ("chat_template.jinja", "chat_template.json"):
        try:
            path = cached_file(source, name, **options)
        except Exception:  # noqa: BLE001 - absent or unreachable: try the next one
            path = None
        if path:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            return text if name.endswith(".jinja") else json.loads(text).get("chat_template")
    return None


__all__ = ["ChatTemplate", "Qwen3VLFamily", "QwenVLFamily", "mrope_positions"]
