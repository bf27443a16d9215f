"""Small deterministic embedders for tests where ranking must mean something.

``ColourShapeEmbedder`` puts texts and images in one space: axis per colour word and shape word
(``red``, ``circle`` …). A text activates the axes of the words it contains; an image activates
the axis of its dominant non-white colour and of its shape (guessed from how much of its
bounding box is filled), plus a small component hashed from its pixels so that distinct images
get distinct vectors. So "a red circle" is nearest to the drawn red circle.

``WordHashEmbedder`` is a text-only bag-of-words model in another space (another dimension).
Both follow the ``Embedder`` protocol and record their calls.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mm_rag_components.errors import ConfigError
from mm_rag_components.media import load_image

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (30, 60, 220), "yellow": (235, 210, 40)}
SHAPES = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.5}
AXES = [*COLOURS, *SHAPES]


def _bucket(token: str, size: int) -> int:
    return int.from_bytes(hashlib.sha256(token.encode()).digest()[:4], "little") % size


def _words(text: str) -> list[str]:
    return [w[:-1] if w.endswith("s") and w[:-1] in AXES else w for w in re.findall(r"[a-z]+", text.lower())]


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:
        vector = np.zeros_like(vector)
        vector[-1] = 1.0
        return vector
    return vector / norm


class ColourShapeEmbedder:
    """Texts and images in one 32-d space of colour and shape axes (see module doc)."""

    modalities = frozenset({"text", "image"})

    def __init__(self, name: str = "fake-colour-shape", dimension: int = 32, fail_on: Callable[[Any], bool] | None = None):
        self.name = name
        self.dimension = dimension
        self.fail_on = fail_on
        self.calls: list[tuple[str, int]] = []
        self.on_batch: Callable[[], None] | None = None

    def embed_texts(self, texts: Sequence[str], *, batch_size: int | None = None, show_progress: bool | None = None) -> np.ndarray:
        self.calls.append(("text", len(texts)))
        rows = []
        for text in texts:
            vec = np.zeros(self.dimension, dtype=np.float32)
            for word in _words(text):
                if word in AXES:
                    vec[AXES.index(word)] += 1.0
                else:
                    vec[len(AXES) + _bucket(word, self.dimension - len(AXES))] += 0.3
            rows.append(_unit(vec))
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, self.dimension), np.float32)

    def embed_images(self, images: Sequence[Any], *, batch_size: int | None = None, show_progress: bool | None = None) -> np.ndarray:
        self.calls.append(("image", len(images)))
        if self.on_batch is not None:
            self.on_batch()
        decoded = [load_image(image) for image in images]
        if self.fail_on is not None and any(self.fail_on(img) for img in decoded):
            raise ValueError("the image processor cannot handle this image")
        rows = [self._image_vector(img) for img in decoded]
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, self.dimension), np.float32)

    def _image_vector(self, img: Any) -> np.ndarray:
        pixels = np.asarray(img, dtype=np.float32)
        vec = np.zeros(self.dimension, dtype=np.float32)
        mask = pixels.sum(axis=2) < 600  # not white
        if mask.any():
            mean = pixels[mask].mean(axis=0)
            colour = min(COLOURS, key=lambda c: float(np.linalg.norm(mean - np.array(COLOURS[c]))))
            vec[AXES.index(colour)] = 1.0
            ys, xs = np.nonzero(mask)
            fill = mask.sum() / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))
            shape = min(SHAPES, key=lambda s: abs(SHAPES[s] - fill))
            vec[AXES.index(shape)] = 1.0
        digest = hashlib.sha256(np.asarray(img).tobytes()).digest()
        noise = np.frombuffer(digest, dtype=np.uint8)[: self.dimension - len(AXES)].astype(np.float32) / 255.0
        vec[len(AXES) :] += 0.05 * noise
        return _unit(vec)


class WordHashEmbedder:
    """Text only: bag of hashed words in a 24-d space, unrelated to the colour/shape space."""

    modalities = frozenset({"text"})

    def __init__(self, name: str = "fake-word-hash", dimension: int = 24):
        self.name = name
        self.dimension = dimension
        self.calls: list[tuple[str, int]] = []

    def embed_texts(self, texts: Sequence[str], *, batch_size: int | None = None, show_progress: bool | None = None) -> np.ndarray:
        self.calls.append(("text", len(texts)))
        rows = []
        for text in texts:
            vec = np.zeros(self.dimension, dtype=np.float32)
            for word in _words(text):
                vec[_bucket("w:" + word, self.dimension)] += 1.0
            rows.append(_unit(vec))
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, self.dimension), np.float32)

    def embed_images(self, images: Sequence[Any], **_: Any) -> np.ndarray:
        raise ConfigError("WordHashEmbedder embeds text only")
