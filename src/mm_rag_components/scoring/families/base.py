"""What the scorer needs to know about a model family, behind one small interface.

A :class:`Family` loads the tokenizer/processor, says how an image enters the token sequence
(:meth:`Family.layout`: the ids that replace one image placeholder and how many of them carry
image features), computes image features (vision tower + projector), builds the inputs of one
full reference forward, and gives position ids when they are not plain 0..n-1 (multimodal
rotary positions). The scorer's fast path is written once against this interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import ModelError


@dataclass(frozen=True)
class ImageLayout:
    """How one image enters the sequence: the ``ids`` that replace its placeholder, the number
    of ``slots`` (ids that receive an image-feature row) and, for M-RoPE families, the patch
    ``grid`` ``(t, h, w)`` before merging."""

    ids: tuple[int, ...]
    slots: int
    grid: tuple[int, int, int] | None = None


class Family:
    """The defaults every family refines: a tokenizer, no images, positions ``0..n-1``."""

    name = "family"
    multimodal = False
    #: Whether the fast path (prefix reuse, cached features) knows this family.
    fast = True
    #: ``AutoModelFor…`` class name the model loads with.
    model_class = "AutoModelForCausalLM"

    def __init__(self, model_type: str) -> None:
        self.model_type = model_type
        self.config: Any = None
        self.tokenizer: Any = None
        #: What :class:`PromptBuilder` renders chat templates with (a processor, or ``None``).
        self.chat: Any = None
        self.image_token: str | None = None
        self.image_token_id: int | None = None

    # loading ---------------------------------------------------------------------------------
    def load(self, source: str, kwargs: dict[str, Any], config: Any, image_splitting: bool | None) -> None:
        """Load the tokenizer (and processor) for ``source``; raise on failure."""
        from transformers import AutoTokenizer

        self.config = config
        self.tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)

    def settings(self) -> dict[str, Any]:
        """Everything besides the weights that decides an image's features (cache keys)."""
        return {"family": self.name}

    def default_expansion(self) -> list[int] | None:
        """The ids one image placeholder becomes when that does not depend on the image."""
        return None

    # images ----------------------------------------------------------------------------------
    def layout(self, image: Any) -> ImageLayout:
        raise ModelError(f"{self.model_type} models take no images")

    def image_features(self, model: Any, images: list[Any], device: Any) -> list[Any]:
        """One tensor per PIL image: ``(slots, hidden)`` or ``(k, slots, hidden)`` where row 0
        goes into the sequence and rows 1.. are extra per-layer inputs (DeepStack)."""
        raise ModelError(f"{self.model_type} models take no images")

    def reference_inputs(self, text: str, images: list[Any]) -> dict[str, Any]:
        """Tensors for one full forward of ``text`` (image placeholders unexpanded) and its
        images, exactly as the model's own processor prepares them."""
        return dict(self.tokenizer([text], add_special_tokens=False, return_tensors="pt"))

    # sequence --------------------------------------------------------------------------------
    def positions(self, ids: list[int], layouts: list[ImageLayout]) -> Any:
        """Position ids of a full sequence when they are not ``0..n-1`` (else ``None``)."""
        return None

    def extra_inputs(self, slot_mask: Any, features: list[Any]) -> dict[str, Any]:
        """Additional decoder inputs for a block whose image slots are ``slot_mask`` (batch,
        length) and whose image features, in slot order, are ``features``."""
        return {}


class ProcessorFamily(Family):
    """A VLM whose ``AutoProcessor`` loads, writes one placeholder token per image and expands
    it to ids that do not depend on the image (probed once on a blank image)."""

    multimodal = True
    model_class = "AutoModelForImageTextToText"

    def load(self, source: str, kwargs: dict[str, Any], config: Any, image_splitting: bool | None) -> None:
        from transformers import AutoProcessor

        self.config = config
        self.processor = AutoProcessor.from_pretrained(source, **kwargs)
        self.chat = self.processor
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        token = getattr(self.processor, "image_token", None)
        if token is None:
            raise ModelError("cannot find the processor's image token")
        self.image_token = str(token)
        if self.tokenizer(self.image_token, add_special_tokens=False)["input_ids"] != [self.tokenizer.convert_tokens_to_ids(self.image_token)]:
            raise ModelError(f"the image token {self.image_token!r} is not a single token")
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(self.image_token)
        self._probe: list[int] | None = None

    def _images_arg(self, images: list[Any]) -> Any:
        return images

    def default_expansion(self) -> list[int]:
        if self._probe is None:
            from PIL import Image

            blank = self._images_arg([Image.new("RGB", (64, 64))])
            self._probe = list(self.processor(text=[self.image_token], images=blank, add_special_tokens=False)["input_ids"][0])
        return self._probe

    def layout(self, image: Any) -> ImageLayout:
        ids = tuple(self.default_expansion())
        return ImageLayout(ids, ids.count(self.image_token_id))

    def reference_inputs(self, text: str, images: list[Any]) -> dict[str, Any]:
        extra = {"images": self._images_arg(images)} if images else {}
        return dict(self.processor(text=[text], add_special_tokens=False, return_tensors="pt", **extra))

    def settings(self) -> dict[str, Any]:
        processor = self.processor.image_processor
        keys = ("size", "max_image_size", "crop_size", "do_image_splitting", "image_mean", "image_std", "resample",
                "do_resize", "do_center_crop", "do_pad", "patch_size", "merge_size", "min_pixels", "max_pixels")
        return {"family": self.name, **{k: _plain(getattr(processor, k)) for k in keys if getattr(processor, k, None) is not None}}


def _plain(value: Any) -> Any:
    """A JSON-able copy of an image-processor setting (SizeDict, enums …)."""
    import dataclasses

    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in dict(value.items()).items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(getattr(value, "value", value))


def to_device(inputs: dict[str, Any], device: Any, dtype: Any) -> dict[str, Any]:
    """Tensors moved to ``device``; floating ones (pixels) cast to the model's ``dtype``."""
    out = {}
    for key, value in inputs.items():
        if hasattr(value, "to"):
            value = value.to(device, dtype=dtype) if value.is_floating_point() else value.to(device)
        out[key] = value
    return out


__all__ = ["Family", "ImageLayout", "ProcessorFamily", "to_device"]
