"""PDFs for tests, demos and the page-retrieval evaluation, written with a real PDF writer (fpdf2,
in the ``dev`` extra).

:func:`write_pdf` writes pages of a photo and a paragraph; :func:`write_page_collection` writes a
few such PDFs from captioned photos (:func:`sample_photos`: the COCO sample in ``shared/`` when
present, else drawn shapes) and ``pages.jsonl``, the layout :func:`~mm_rag_components.datasets.pages.pages_task`
loads: each page holds one photo and a paragraph (one caption among distractor sentences), and
the photo's other captions are the queries whose relevant item is that page.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError

#: Sentences that say nothing about any photo, mixed into every page's paragraph.
DISTRACTORS = (
    "The committee will review the figures again at the end of the quarter.",
    "Further details are listed in the appendix of this report.",
    "All measurements were taken under the same conditions.",
    "This section was revised after the second round of comments.",
    "Readers interested in the method may skip to the next chapter.",
    "The archive holds several hundred similar records.",
    "Names and dates have been checked against the original register.",
    "A summary table follows at the end of the document.",
    "Nothing in this paragraph should be taken as final.",
    "The same procedure was repeated for every entry in the catalogue.",
    "Copies of this page were sent to the regional offices.",
    "See the glossary for the meaning of the abbreviations used here.",
)


def _latin1(text: str) -> str:
    """``text`` in the core fonts' character set (Latin-1; others become ``?``)."""
    return text.encode("latin-1", "replace").decode("latin-1")


def write_pdf(path: str | Path, pages: Sequence[tuple[Any, str]], *, title: str | None = None) -> Path:
    """Write a PDF of A4 pages, each ``(image, paragraph)``: an image (a path or PIL image; ``None``
    for none) across the top and the paragraph below it (``""``: no text layer). Returns ``path``."""
    try:
        from fpdf import FPDF
    except ImportError as exc:  # pragma: no cover - fpdf2 is in the dev extra
        raise ConfigError("writing test PDFs needs fpdf2: pip install fpdf2") from exc
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(False)
    if title:
        pdf.set_title(_latin1(title))
    for image, paragraph in pages:
        pdf.add_page()
        pdf.set_font("helvetica", size=12)
        y = 20.0
        if image is not None:
            pdf.image(image, x=20, y=y, w=170, h=120, keep_aspect_ratio=True)
            y += 130
        if paragraph:
            pdf.set_xy(20, y)
            pdf.multi_cell(170, 6, _latin1(paragraph))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return path


def write_page_collection(
    folder: str | Path,
    photos: Sequence[tuple[Any, Sequence[str]]] | None = None,
    *,
    documents: int = 3,
    distractors: int = 3,
    seed: int = 0,
) -> Path:
    """Write ``documents`` PDFs of one page per photo into ``folder``, and ``pages.jsonl``.

    ``photos``: ``(image, captions)`` pairs (default: the COCO sample when ``shared/`` is present,
    else drawn shapes with their captions). Each page shows its photo and a paragraph of one
    caption among ``distractors`` distractor sentences; the other captions are its queries.
    Returns ``folder``.
    """
    if photos is None:
        photos = sample_photos()
    if not photos or documents < 1 or distractors < 0:
        raise ConfigError("write_page_collection needs photos, documents >= 1 and distractors >= 0")
    rng = random.Random(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    per_doc = -(-len(photos) // documents)
    for d in range(documents):
        chunk = photos[d * per_doc : (d + 1) * per_doc]
        if not chunk:
            break
        name = f"document-{d + 1}.pdf"
        pages = []
        for number, (image, captions) in enumerate(chunk, 1):
            shown, *queries = [" ".join(c.split()) for c in captions]
            sentences = [shown.rstrip(".") + ".", *rng.sample(DISTRACTORS, min(distractors, len(DISTRACTORS)))]
            rng.shuffle(sentences)
            pages.append((image, " ".join(sentences)))
            rows.append({"pdf": name, "page": number, "caption": shown, "queries": queries})
        write_pdf(folder / name, pages, title=f"Photo collection, part {d + 1}")
    (folder / "pages.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


def sample_photos(*, coco: bool = True) -> list[tuple[Any, Sequence[str]]]:
    """``(image, captions)`` pairs: the COCO sample when ``coco`` and ``shared/`` is present, else
    the 12 drawn shapes (colour × shape) with five captions each."""
    from .captions import CAPTION_PATTERNS
    from .data import COLOURS, SHAPES, coco_sample, draw_shape

    sample = coco_sample() if coco else None
    if sample:
        return [(str(c.path), c.captions) for c in sample]
    return [
        (draw_shape(colour, shape, 96), [p.format(c=colour, s=shape) for p in CAPTION_PATTERNS])
        for colour in COLOURS for shape in SHAPES
    ]


__all__ = ["DISTRACTORS", "sample_photos", "write_page_collection", "write_pdf"]
