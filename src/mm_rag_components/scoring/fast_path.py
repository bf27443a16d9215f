"""The fast scoring path, written once for every family.

1. The longest token prefix all candidates share — never past a candidate's own image, never
   splitting an image — is encoded once; its KV cache is reused for every candidate.
2. The suffixes run in right-padded batches sorted by length; only the last real position's
   hidden state meets the two answer rows of the output layer.
3. Positions: a family with multimodal rotary positions (Qwen-VL's M-RoPE) gives the positions of
   each *full* sequence; the prefix block takes its first ``shared`` columns (the same for every
   candidate, as the prefix is) and each suffix the rest, so the result equals one full forward.
   Other families use the decoder's default ``past + 0..n-1``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ModelError
from ..media import LoadedImage
from .families.base import Family, ImageLayout


@dataclass
class Prepared:
    """One candidate's tokens and images, or the flag that stops it from being scored."""

    index: int
    ids: list[int] = field(default_factory=list)
    images: list[LoadedImage] = field(default_factory=list)  # in prompt order
    layouts: list[ImageLayout] = field(default_factory=list)  # one per image
    labels: list[str] = field(default_factory=list)  # "query" / "document", one per image
    text: str = ""
    flag: str | None = None
    skip: bool = False


def main_rows(feature: Any) -> Any:
    """The rows that go into the sequence (row 0 of a DeepStack stack)."""
    return feature if feature.dim() == 2 else feature[0]


def shared_prefix(items: list[Prepared], image_token_id: int | None) -> int:
    """Length of the token prefix every candidate shares, stopping before any candidate's own
    image (its ids equal other candidates' but its pixels differ) and never splitting an image;
    every candidate keeps at least one token to score."""
    first = items[0].ids
    shared = min(len(p.ids) for p in items) - 1
    for p in items[1:]:
        n = 0
        while n < shared and p.ids[n] == first[n]:
            n += 1
        shared = n
    if image_token_id is None:
        return shared
    for p in items:
        slots = [k for k, t in enumerate(p.ids) if t == image_token_id]
        used = 0
        for label, layout in zip(p.labels, p.layouts):
            if label == "document" or slots[used + layout.slots - 1] >= shared:
                shared = min(shared, slots[used])
                break
            used += layout.slots
    return shared


class FastPath:
    """Scores prepared candidates with one model; see the module docstring."""

    def __init__(self, model: Any, family: Family, device: Any, answer: Callable[[Any], Any], pad_id: int) -> None:
        self.model = model
        self.family = family
        self.device = device
        self.answer = answer
        self.pad_id = pad_id
        self.decoder = model.get_decoder()

    def _embed(self, rows: list[list[int]], row_images: list[list[LoadedImage]], features: dict[str, Any], width: int) -> tuple[Any, dict[str, Any]]:
        """Token embeddings for right-padded rows with image features scattered into the image
        slots, and the family's extra decoder inputs for them."""
        import torch

        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, : len(row)] = torch.tensor(row, dtype=torch.long)
        ids = ids.to(self.device)
        embeds = self.model.get_input_embeddings()(ids)
        token = self.family.image_token_id
        if token is None or not any(row_images):
            return embeds, {}
        mask = torch.zeros_like(ids, dtype=torch.bool)
        ordered = []
        for r, images in enumerate(row_images):
            if not images:
                continue
            slots = (ids[r, : len(rows[r])] == token).nonzero().squeeze(-1)
            values = torch.cat([main_rows(features[im.sha256]) for im in images]).to(embeds.dtype)
            if values.shape[0] != slots.shape[0]:
                raise ModelError(f"{slots.shape[0]} image slots but {values.shape[0]} image features")
            embeds[r, slots] = values
            mask[r, slots] = True
            ordered.extend(features[im.sha256] for im in images)
        return embeds, self.family.extra_inputs(mask, [f.to(self.device, embeds.dtype) for f in ordered])

    def logodds(self, items: list[Prepared], features: dict[str, Any], batch_size: int, progress: Any = None) -> dict[int, float]:
        import torch

        shared = shared_prefix(items, self.family.image_token_id)
        prefix_ids = items[0].ids[:shared]
        n_prefix_images = _images_within(shared, items[0], self.family.image_token_id)  # the same (query) images for every candidate
        positions = {p.index: self.family.positions(p.ids, p.layouts) for p in items}
        out: dict[int, float] = {}
        with torch.inference_mode():
            cache = None
            if shared > 0:
                embeds, extra = self._embed([prefix_ids], [items[0].images[:n_prefix_images]], features, shared)
                pos = positions[items[0].index]
                if pos is not None:
                    extra["position_ids"] = pos[:, None, :shared].to(self.device)
                done = self.decoder(inputs_embeds=embeds, use_cache=True, **extra)
                cache = getattr(done, "cache", None) or done.past_key_values
            order = sorted(items, key=lambda p: len(p.ids))
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                suffixes = [p.ids[shared:] for p in batch]
                width = max(len(s) for s in suffixes)
                embeds, extra = self._embed(suffixes, [p.images[n_prefix_images:] for p in batch], features, width)
                mask = torch.zeros((len(batch), shared + width), dtype=torch.long, device=self.device)
                mask[:, :shared] = 1
                for r, s in enumerate(suffixes):
                    mask[r, shared : shared + len(s)] = 1
                if positions[batch[0].index] is not None:
                    pos = torch.zeros((3, len(batch), width), dtype=torch.long)
                    for r, p in enumerate(batch):
                        pos[:, r, : len(suffixes[r])] = positions[p.index][:, shared:]
                    extra["position_ids"] = pos.to(self.device)
                if cache is not None:
                    batch_cache = copy.deepcopy(cache)
                    batch_cache.batch_repeat_interleave(len(batch))
                    extra[_cache_argument(self.decoder)] = batch_cache
                hidden = self.decoder(inputs_embeds=embeds, attention_mask=mask, use_cache=cache is not None, **extra).last_hidden_state
                last = torch.tensor([len(s) - 1 for s in suffixes], device=self.device)
                values = self.answer(hidden[torch.arange(len(batch), device=self.device), last])
                for p, value in zip(batch, values.tolist()):
                    out[p.index] = value
                if progress is not None:
                    progress.update(len(batch))
        return out


def _images_within(length: int, item: Prepared, token: int | None) -> int:
    """How many of ``item``'s leading images lie wholly inside its first ``length`` tokens."""
    if token is None:
        return 0
    inside = sum(1 for t in item.ids[:length] if t == token)
    count = used = 0
    for layout in item.layouts:
        if used + layout.slots > inside:
            break
        used += layout.slots
        count += 1
    return count


def _cache_argument(decoder: Any) -> str:
    """The decoder's keyword for a KV cache: ``cache`` (transformers ≥ 5.2x), else ``past_key_values``."""
    import inspect

    return "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"


__all__ = ["FastPath", "Prepared", "main_rows", "shared_prefix"]

