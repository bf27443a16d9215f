"""A small captioned image folder in the layout of ``shared/data/coco-cc-51``, drawn locally.

``write_captioned_folder(folder)`` draws one image per colour × shape under ``images/`` and writes
``captions.jsonl`` (one ``{"image": ..., "captions": [...]}`` object per line). Captions name the
colour and the shape in different words, so an embedder that knows colours and shapes ranks the
captions of the same image first: evaluation tests get rankings that mean something, offline.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError
from .data import COLOURS, SHAPES, draw_shape

#: Caption patterns; ``{c}`` is the colour, ``{s}`` the shape.
CAPTION_PATTERNS = (
    "a {c} {s}",
    "one {s} painted {c} on white",
    "a drawing of a {c} {s}",
    "{c} {s} in the middle of the picture",
    "the picture shows a single {s}, coloured {c}",
)


def write_captioned_folder(
    folder: str | Path,
    *,
    colours: int = len(COLOURS),
    shapes: int = len(SHAPES),
    captions_per_image: int = 2,
    size: int = 48,
) -> Path:
    """Draw ``colours × shapes`` images into ``folder/images`` and write ``folder/captions.jsonl``.

    Each image gets ``captions_per_image`` (1-5) captions. Returns ``folder``.
    """
    if not 1 <= captions_per_image <= len(CAPTION_PATTERNS):
        raise ConfigError(f"captions_per_image must be 1..{len(CAPTION_PATTERNS)}")
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for colour in list(COLOURS)[:colours]:
        for shape in SHAPES[:shapes]:
            img = draw_shape(colour, shape, size)
            name = f"images/{colour}_{shape}.png"
            img.save(folder / name)
            captions = [p.format(c=colour, s=shape) for p in CAPTION_PATTERNS[:captions_per_image]]
            lines.append(json.dumps({"image": name, "captions": captions}))
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


__all__ = ["CAPTION_PATTERNS", "write_captioned_folder"]
