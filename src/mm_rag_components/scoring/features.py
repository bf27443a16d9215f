"""Image features for one scorer: looked up in memory, then on disk, else computed by the
family's vision path in chunks and stored in both. Keys name the model (its configuration and
weight files), the family's processor settings, the dtype and the image's sha256."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import MMRagError, ModelError
from ..hub import weight_files
from ..media import LoadedImage, decode_image, load_image_with_hash
from .disk_cache import DiskFeatureCache
from .vision_cache import VisionFeatureCache

logger = logging.getLogger(__name__)

#: With no fixed vision batch (``step=None``, the CPU default): images go through the vision tower
#: in calls of at most this many feature rows, and one image at least. Small single-view images
#: (a 256-px SmolVLM view: 16 rows; a Qwen page capped at 256×256: 54) then share a call —
#: measured on 2 CPU cores 10% faster than one image per call when idle, up to 2× under load —
#: while tiled or large images (SmolVLM's 13 views: 208 rows and more, LLaVA's 576) run alone,
#: where batching was 3–5% slower.
VISION_ROWS_PER_CALL = 256


class FeatureStore:
    """The feature cache of a scorer (``cache``: memory LRU over an optional disk cache)."""

    def __init__(self, max_items: int, directory: str | Path | None, max_bytes: int) -> None:
        disk = DiskFeatureCache(directory, max_bytes=max_bytes) if directory is not None else None
        self.directory = str(directory) if directory is not None else None
        self.max_bytes = max_bytes
        self.cache = VisionFeatureCache(max_items, disk=disk)
        self.computed = 0  # images that went through the vision tower
        self.vision_seconds = 0.0  # wall time spent computing them
        self._prefix: str | None = None

    def bind(self, name: str, family: Any, model: Any, device: Any) -> None:
        """Attach the loaded model (features are computed with it and keyed by it)."""
        self.family, self.model, self.device = family, model, device
        identity = {"model": fingerprint(name, model), "settings": family.settings(), "dtype": str(model.dtype), "device": device.type}
        self._prefix = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()

    def _key(self, sha256: str) -> tuple[str, str]:
        assert self._prefix is not None, "bind() first"
        return (self._prefix, sha256)

    def get(self, images: list[LoadedImage], step: int | None, layouts: dict[str, Any]) -> dict[str, Any]:
        """Features per image sha256: cached ones (shape-checked), the rest computed."""
        found: dict[str, Any] = {}
        missing: dict[str, LoadedImage] = {}
        for image in images:
            if image.sha256 in found or image.sha256 in missing:
                continue
            cached = self.cache.get(self._key(image.sha256))
            slots = layouts[image.sha256].slots
            if cached is not None and cached.dim() >= 2 and cached.shape[-2] == slots:
                found[image.sha256] = cached.to(self.device)
                continue
            if cached is not None:
                logger.warning("cached features of image %s have shape %s, expected %d rows; recomputing", image.sha256[:12], tuple(cached.shape), slots)
            missing[image.sha256] = image
        found.update(self._compute(list(missing.values()), step))
        return found

    def _chunks(self, images: list[LoadedImage], step: int | None) -> Iterable[list[LoadedImage]]:
        """Images per vision call: ``step`` of them, or (``None``) as many as fit
        :data:`VISION_ROWS_PER_CALL` feature rows, one at least."""
        if step is not None:
            yield from (images[start : start + step] for start in range(0, len(images), step))
            return
        chunk: list[LoadedImage] = []
        rows = 0
        for image in images:
            slots = self.family.layout(image.image).slots
            if chunk and rows + slots > VISION_ROWS_PER_CALL:
                yield chunk
                chunk, rows = [], 0
            chunk.append(image)
            rows += slots
        if chunk:
            yield chunk

    def _compute(self, images: list[LoadedImage], step: int | None, progress: Any = None) -> dict[str, Any]:
        out = {}
        for chunk in self._chunks(images, step):
            began = time.perf_counter()
            features = self.family.image_features(self.model, [im.image for im in chunk], self.device)
            self.vision_seconds += time.perf_counter() - began
            for image, feature in zip(chunk, features):
                expected = self.family.layout(image.image).slots
                if feature.shape[-2] != expected:
                    raise ModelError(f"{expected} image slots but {feature.shape[-2]} image features")
                self.cache.put(self._key(image.sha256), feature)
                out[image.sha256] = feature
            self.computed += len(chunk)
            if progress is not None:
                progress.update(len(chunk))
        return out

    def precompute(self, images: Iterable[Any], step: int | None, *, max_pixels: int | None, show_progress: bool | None = None, progress: Any = None) -> int:
        """Features for ``images`` not cached yet (see :meth:`TransformersScorer.precompute`)."""
        from ..progress import progress_bar

        items = list(images)
        own = progress is None
        bar = progress_bar(show_progress, total=len(items), desc="reranker image features", unit="image") if own else progress
        todo: dict[str, LoadedImage] = {}
        try:
            for item in items:
                loaded = self._load(item, max_pixels)
                if loaded is None or loaded.sha256 in todo or self.cache.contains(self._key(loaded.sha256)):
                    bar.update(1)
                    continue
                todo[loaded.sha256] = loaded
            self._compute(list(todo.values()), step, bar)
        finally:
            if own:
                bar.close()
        return len(todo)

    def _load(self, item: Any, max_pixels: int | None) -> LoadedImage | None:
        """A decoded image with its hash; ``(sha256, payload)`` is decoded only when not cached."""
        try:
            if isinstance(item, LoadedImage):
                return item
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
                sha, payload = item
                if self.cache.contains(self._key(sha)):
                    return LoadedImage(None, sha)  # type: ignore[arg-type] - skipped by the caller
                image = decode_image(bytes(payload), max_pixels=max_pixels) if isinstance(payload, (bytes, bytearray)) else payload
                return LoadedImage(image, sha)
            return load_image_with_hash(item, max_pixels=max_pixels)
        except MMRagError as exc:
            logger.warning("precompute: skipped an unreadable image: %s", exc)
            return None


def fingerprint(name: str, model: Any) -> str:
    """The model's configuration and the names, sizes and times of its weight files (a local
    folder) or its hub revision: a rebuilt or updated model never meets older features."""
    parts: list[Any] = [name, model.config.to_json_string(use_diff=False)]
    folder = Path(name)
    if folder.is_dir():
        parts.extend(weight_files(folder))
    else:
        parts.append(getattr(model.config, "_commit_hash", None))
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


__all__ = ["FeatureStore", "VISION_ROWS_PER_CALL", "fingerprint"]
