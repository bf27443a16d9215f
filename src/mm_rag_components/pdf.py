"""PDF documents page by page, with pypdfium2 (the ``[pdf]`` extra): open a regular file safely,
render each page within a pixel limit and extract its text layer, one page alive at a time.

A document's JavaScript and form logic never run: forms are never initialised (PDFium draws a
field as its stored appearance says) and pypdfium2's PDFium has no JavaScript engine. A document
that cannot be read is a :class:`~mm_rag_components.errors.MediaError` naming the file and why
(encrypted, not a PDF, corrupt, no pages); a page that cannot be read is one naming the page.
PDFium is not thread-safe: every call into it holds one process-wide lock.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, MediaError
from .files import open_regular_file
from .unicode import clean_text

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

#: The one-line error when pypdfium2 is missing.
PDF_EXTRA = "PDF ingest needs pypdfium2: pip install 'mm-rag-components[pdf]'"
#: Default page rendering resolution (dots per inch; 72 points are an inch).
DEFAULT_PAGE_DPI = 100.0
#: Default number of pages read from one PDF (later pages are left out, noted).
DEFAULT_MAX_PAGES_PER_FILE = 10_000
#: A page longer than this many times its width (or the reverse) is not rendered (its text is kept).
MAX_PAGE_ASPECT = 50
#: Pixel limit of a page image when the index has none (``max_pixels=None``).
FALLBACK_MAX_PAGE_PIXELS = 64_000_000

_LOCK = threading.RLock()
_CONTROL = {c: " " for c in (*range(0, 9), 11, 12, *range(14, 32), 0x7F, 0xFFFE, 0xFFFF)}
_SIGNATURES = {
    b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image", b"RIFF": "a WebP image",
    b"BM": "a BMP image", b"II*\x00": "a TIFF image", b"MM\x00*": "a TIFF image", b"PK\x03\x04": "a ZIP archive",
}


def pdfium() -> Any:
    """The ``pypdfium2`` module, or a :class:`ConfigError` naming the ``[pdf]`` extra."""
    try:
        import pypdfium2
    except ImportError as exc:
        raise ConfigError(PDF_EXTRA) from exc
    return pypdfium2


@dataclass
class Page:
    """One page read: 1-based ``number``, its RGB ``image`` (``None`` when not rendered) and the
    sha256 of its mode, size and pixels (``digest``, as :func:`pixel_hash` computes it), its text
    layer (``""`` when it has none) and notes (rendered at a lower DPI, text repaired …)."""

    number: int
    image: Image.Image | None
    digest: str
    text: str
    notes: list[str] = field(default_factory=list)


def pixel_hash(image: Image.Image) -> str:
    """sha256 of an image's mode, size and pixels: what names a stored page image."""
    return hashlib.sha256(f"{image.mode}{image.size}".encode() + image.tobytes()).hexdigest()


class PdfFile:
    """An open PDF (a context manager): ``page_count``, ``title`` (its metadata title or ``""``),
    ``notes`` (forms or JavaScript present, never run) and :meth:`page`. The file is read lazily
    through one descriptor, never whole; errors say why, the caller says which file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        lib = pdfium()
        fd = open_regular_file(path)
        stream = os.fdopen(fd, "rb")
        try:
            head = stream.read(1024)
            stream.seek(0)
            with _LOCK:
                self._doc = lib.PdfDocument(stream, autoclose=True)
        except lib.PdfiumError as exc:
            stream.close()
            with _LOCK:
                reason = _why(path, head)
            raise MediaError(reason) from exc
        except BaseException:
            stream.close()
            raise
        try:
            with _LOCK:
                self.page_count = len(self._doc)
                self.title = _title(self._doc)
                self.notes = _active_content(self._doc)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> PdfFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        with _LOCK:
            self._doc.close()

    def page(self, number: int, *, dpi: float, max_pixels: int | None, render: bool = True) -> Page:
        """Page ``number`` (1-based): rendered at ``dpi`` (lowered to stay within ``max_pixels``,
        noted) unless ``render`` is False, and its text layer."""
        lib = pdfium()
        notes: list[str] = []
        with _LOCK:
            try:
                handle = self._doc[number - 1]
            except lib.PdfiumError as exc:
                raise MediaError(f"page {number}: cannot be loaded ({exc})") from exc
            try:
                image, digest = _render(handle, number, dpi, max_pixels, notes) if render else (None, "")
                text = _text(handle, number, notes)
            except lib.PdfiumError as exc:
                raise MediaError(f"page {number}: cannot be read ({exc})") from exc
            finally:
                handle.close()
        return Page(number, image, digest, text, notes)


def _why(path: str | os.PathLike[str], head: bytes) -> str:
    """Why PDFium refused the document at ``path`` (a regular file), in words. It is loaded again
    by path: PDFium's last error is only meaningful right after a failed load (a document that
    loads but has no pages leaves an older error in place)."""
    raw = pdfium().raw
    doc = raw.FPDF_LoadDocument(os.fsencode(path), None)
    if doc:
        count = raw.FPDF_GetPageCount(doc)
        raw.FPDF_CloseDocument(doc)
        return "the PDF has no pages" if count < 1 else "cannot be opened"
    code = raw.FPDF_GetLastError()
    if code == raw.FPDF_ERR_PASSWORD:
        return "encrypted: the PDF needs a password (password-protected PDFs are not read)"
    if code == raw.FPDF_ERR_SECURITY:
        return "encrypted with an unsupported security handler (not read)"
    if b"%PDF-" not in head:
        looks = next((what for magic, what in _SIGNATURES.items() if head.startswith(magic)), None)
        return "not a PDF (no %PDF- header" + (f"; it looks like {looks}" if looks else "") + ")"
    if code == raw.FPDF_ERR_FORMAT:
        return "corrupt or truncated PDF (PDFium cannot parse it)"
    return f"cannot be opened (PDFium error {code})"


def _title(doc: Any) -> str:
    """The document's metadata title (``""`` when none); broken UTF-16 becomes U+FFFD."""
    import ctypes

    raw = pdfium().raw
    size = raw.FPDF_GetMetaText(doc, b"Title\x00", None, 0)
    if size <= 2:
        return ""
    buffer = ctypes.create_string_buffer(size)
    raw.FPDF_GetMetaText(doc, b"Title\x00", buffer, size)
    return _clean(buffer.raw[: size - 2].decode("utf-16-le", "replace")).strip()


def _active_content(doc: Any) -> list[str]:
    """Notes on forms and document JavaScript, which are never run."""
    raw = pdfium().raw
    notes = []
    if doc.get_formtype() != raw.FORMTYPE_NONE:
        notes.append("has form fields: pages show their stored appearance; forms are never initialised or run")
    scripts = raw.FPDFDoc_GetJavaScriptActionCount(doc)
    if scripts > 0:
        notes.append(f"has {scripts} JavaScript action(s): never run")
    return notes


def _render(page: Any, number: int, dpi: float, max_pixels: int | None, notes: list[str]) -> tuple[Image.Image | None, str]:
    width, height = page.get_size()
    if not (math.isfinite(width) and math.isfinite(height) and width > 0 and height > 0):
        raise MediaError(f"page {number} has no usable size ({width:g} x {height:g} points)")
    if max(width, height) / min(width, height) > MAX_PAGE_ASPECT:
        notes.append(f"page {number} is {width:g} x {height:g} points (over {MAX_PAGE_ASPECT}:1): its image is not rendered")
        return None, ""
    limit = max_pixels or FALLBACK_MAX_PAGE_PIXELS
    scale = dpi / 72
    if math.ceil(width * scale) * math.ceil(height * scale) > limit:
        scale = math.sqrt(limit / (width * height))
        while scale > 0 and math.ceil(width * scale) * math.ceil(height * scale) > limit:
            scale *= 0.99
        if scale <= 0 or min(width, height) * scale < 1:
            raise MediaError(f"page {number} ({width:g} x {height:g} points) cannot be rendered within {limit:,} pixels")
        notes.append(f"page {number} ({width:g} x {height:g} points) rendered at {scale * 72:.3g} DPI, not {dpi:g}, "
                     f"to stay within {limit:,} pixels")
    bitmap = page.render(scale=scale, rev_byteorder=True, may_draw_forms=False, limit_image_cache=True)
    try:
        image = bitmap.to_pil()
        if image.mode != "RGB" or bitmap.stride != bitmap.width * 3:
            image = image.convert("RGB")
            return image, pixel_hash(image)
        # the bitmap's buffer holds exactly the image's bytes: hash it without a copy
        return image, hashlib.sha256(f"RGB{image.size}".encode() + memoryview(bitmap.buffer)).hexdigest()
    finally:
        bitmap.close()


def _text(page: Any, number: int, notes: list[str]) -> str:
    textpage = page.get_textpage()
    try:
        text = textpage.get_text_bounded(errors="surrogatepass")
    finally:
        textpage.close()
    text, repaired = clean_text(text)
    if repaired:
        notes.append(f"page {number}: invalid Unicode in the text layer replaced with U+FFFD")
    return _clean(text)


def _clean(text: str) -> str:
    """``text`` with pdfium's line ends (``\\r\\n``) as newlines, and NUL and other control
    characters (not tab or newlines) as spaces."""
    return clean_text(text)[0].replace("\r\n", "\n").replace("\r", "\n").translate(_CONTROL)


__all__ = [
    "DEFAULT_MAX_PAGES_PER_FILE", "DEFAULT_PAGE_DPI", "MAX_PAGE_ASPECT", "PDF_EXTRA", "Page", "PdfFile", "pdfium", "pixel_hash",
]
