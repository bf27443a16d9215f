"""Shared pieces of the PDF tests: PDFs written by fpdf2 or pypdfium2, and hand-assembled ones for
what those writers refuse to write (JavaScript, form fields, a broken text layer). No tests here."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

from PIL import Image

from mm_rag_components.testing import write_pdf


def photo(colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> Image.Image:
    img = Image.new("RGB", size, colour)
    img.paste((255 - colour[0], 255 - colour[1], 255 - colour[2]), (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
    return img


def report_pdf(path: Path, texts: list[str], *, title: str | None = None) -> Path:
    """One page per text, each with its own small photo (``""``: a page without a text layer)."""
    pages = [(photo(((60 * i) % 256, 120, (200 - 30 * i) % 256)), text) for i, text in enumerate(texts)]
    return write_pdf(path, pages, title=title)


def blank_pages_pdf(sizes: list[tuple[float, float]]) -> bytes:
    """A PDF of empty pages of the given sizes (points), written by pypdfium2 (any size, even absurd)."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument.new()
    for width, height in sizes:
        doc.new_page(width, height)
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def assemble(objects: list[bytes], *, info: int | None = None) -> bytes:
    """A PDF from numbered object bodies (object ``i + 1`` is ``objects[i]``; 1 is the catalog),
    with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    trailer = b"<< /Size %d /Root 1 0 R" % (len(objects) + 1) + (b" /Info %d 0 R" % info if info else b"") + b" >>"
    out += b"trailer\n" + trailer + b"\nstartxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def stream(data: bytes, extra: bytes = b"") -> bytes:
    packed = zlib.compress(data)
    return b"<< /Length %d /Filter /FlateDecode %s >>\nstream\n" % (len(packed), extra) + packed + b"\nendstream"


def page_with_text(text_ops: bytes, *, extra_catalog: bytes = b"", extra_objects: list[bytes] | None = None,
                   to_unicode: bytes | None = None, title: bytes | None = None, annots: bytes = b"") -> bytes:
    """One Letter page drawing ``text_ops`` (inside BT/ET) with Helvetica (optionally with a
    ToUnicode CMap), plus extra catalog entries and objects (numbered from 7)."""
    font = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica" + (b" /ToUnicode 6 0 R" if to_unicode else b"") + b" >>"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R " + extra_catalog + b" >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> "
        + annots + b" >>",
        stream(b"BT /F1 18 Tf 72 700 Td " + text_ops + b" ET"),
        font,
        stream(to_unicode or b""),
        *(extra_objects or []),
    ]
    info = None
    if title is not None:
        objects.append(b"<< /Title " + title + b" >>")
        info = len(objects)
    return assemble(objects, info=info)


def javascript_and_form_pdf() -> bytes:
    """A page with an open action, a document-level script and a text field whose keystroke and
    format actions are JavaScript."""
    js = b"<< /S /JavaScript /JS (app.alert\\('ran'\\); this.getField\\('name'\\).value = 'changed';) >>"
    return page_with_text(
        b"(A form with scripts) Tj",
        extra_catalog=b"/OpenAction 7 0 R /Names << /JavaScript << /Names [(init) 7 0 R] >> >> /AcroForm << /Fields [8 0 R] /NeedAppearances true >>",
        extra_objects=[
            js,
            b"<< /Type /Annot /Subtype /Widget /FT /Tx /T (name) /V (original) /Rect [72 600 300 630] /P 3 0 R "
            b"/AA << /K 7 0 R /F 7 0 R /Fo 7 0 R >> >>",
        ],
        annots=b"/Annots [8 0 R]",
    )


#: A ToUnicode CMap sending 'A' to a lone high surrogate and 'B' to U+FFFF (not a character).
BROKEN_CMAP = (
    b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CMapName /Broken def "
    b"1 begincodespacerange <00> <FF> endcodespacerange "
    b"2 beginbfchar <41> <D800> <42> <FFFF> endbfchar endcmap CMapName currentdict /CMap defineresource pop end end"
)
