"""Small data sets for demos, tests and benchmarks: drawn sample folders and the optional COCO set."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Colours and shapes of the drawn sample images; their names appear in the file names and texts.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (30, 60, 220),
    "yellow": (235, 210, 40),
}
SHAPES = ("circle", "square", "triangle")

_TEXTS = {
    "cats.txt": "Cats are small domesticated carnivores. They sleep for most of the day and hunt at dusk.",
    "trains.md": "# Trains\n\nA train runs on rails between stations. Freight trains carry goods; "
    "passenger trains carry people across the country.",
    "colours.txt": "Red, green and blue are the primary colours of light. Mixing them gives white.",
}


def shared_dir() -> Path | None:
    """The optional ``shared/`` folder beside the checkout (``$MMRAG_SHARED_DIR`` overrides)."""
    candidates = [os.environ.get("MMRAG_SHARED_DIR")]
    candidates += [str(Path.cwd().parent / "shared"), str(Path(__file__).resolve().parents[4] / "shared")]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


@dataclass(frozen=True)
class CaptionedImage:
    path: Path
    captions: tuple[str, ...]


def coco_sample() -> list[CaptionedImage] | None:
    """The 51 captioned COCO photos in ``shared/data/coco-cc-51`` when present, else ``None``."""
    root = shared_dir()
    if root is None or not (root / "data/coco-cc-51/captions.jsonl").is_file():
        return None
    base = root / "data/coco-cc-51"
    rows = [json.loads(line) for line in (base / "captions.jsonl").read_text().splitlines() if line.strip()]
    return [CaptionedImage(base / row["image"], tuple(row["captions"])) for row in rows]


def draw_shape(colour: str, shape: str, size: int) -> Any:
    """A ``size``-pixel white PIL image with one ``colour`` (:data:`COLOURS`) ``shape`` (:data:`SHAPES`)."""
    from PIL import Image, ImageDraw

    rgb = COLOURS[colour]
    margin = size // 6
    box = (margin, margin, size - margin, size - margin)
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    if shape == "circle":
        draw.ellipse(box, fill=rgb)
    elif shape == "square":
        draw.rectangle(box, fill=rgb)
    else:
        draw.polygon([(size // 2, margin), (size - margin, size - margin), (margin, size - margin)], fill=rgb)
    return img


def write_sample_folder(folder: str | Path, *, size: int = 96) -> Path:
    """Draw one image per colour × shape and write a few text files into ``folder``.

    File names say what is drawn (``red_circle.png``), so a demo can check its own answers.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for colour in COLOURS:
        for shape in SHAPES:
            draw_shape(colour, shape, size).save(folder / f"{colour}_{shape}.png")
    for name, text in _TEXTS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


__all__ = ["COLOURS", "SHAPES", "CaptionedImage", "coco_sample", "shared_dir", "write_sample_folder"]
