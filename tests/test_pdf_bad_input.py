"""Bad PDFs: each is a clear skip reason (or a note) in the IngestReport — never a crash, never a
hang, never a good file of the same run lost. Corruptions are generated (truncation at any offset,
flipped bytes) and PDFs are written by fpdf2, pypdfium2 or assembled by hand; none is committed."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mm_rag_components import MultimodalIndex
from mm_rag_components.entries import EntryReader
from mm_rag_components.files import FoundFile
from mm_rag_components.ingest import Entry, Skipped
from mm_rag_components.pages import DocumentLedger, PageImages, PageReader
from mm_rag_components.types import IMAGE_PATH, PAGE, SOURCE, TITLE

sys.path.insert(0, str(Path(__file__).parent))
from bounds import time_limit  # noqa: E402
from pdf_support import BROKEN_CMAP, blank_pages_pdf, javascript_and_form_pdf, page_with_text, report_pdf  # noqa: E402

import pypdfium2  # noqa: E402 - the dev extra installs it (and fpdf2): CI runs these tests


@pytest.fixture(scope="module")
def good_pdf(tmp_path_factory) -> bytes:
    path = report_pdf(tmp_path_factory.mktemp("pdf") / "good.pdf", ["First page of text.", "Second page, more text."], title="Good")
    return path.read_bytes()


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (12, 10), (200, 40, 40)).save(out, format="PNG")
    return out.getvalue()


def _encrypted(tmp_path: Path) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(text="secret")
    pdf.set_encryption(owner_password="owner", user_password="user")
    return bytes(pdf.output())


def _ingest_with_good_files(tmp_path: Path, embedder, name: str, data: bytes, **options):
    folder = tmp_path / "docs"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(data)
    (folder / "good.png").write_bytes(_png())
    (folder / "good.txt").write_text("a good text", encoding="utf-8")
    index = MultimodalIndex(tmp_path / "db", image_embedder=embedder, page_dpi=30, **options)
    with time_limit(60):
        report = index.ingest_folder(folder, show_progress=False)
    good = index.image_store.get(where={SOURCE: str(folder / "good.png")}), index.text_store.get(where={SOURCE: str(folder / "good.txt")})
    assert all(good), f"a good file was lost: {report.summary()}"
    return report, index


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("locked.pdf", _encrypted, "encrypted: the PDF needs a password"),
        ("empty.pdf", lambda tmp: blank_pages_pdf([]), "the PDF has no pages"),
        ("image.pdf", lambda tmp: _png(), "not a PDF (no %PDF- header; it looks like a PNG image)"),
        ("zero.pdf", lambda tmp: b"", "not a PDF (no %PDF- header)"),
        ("garbage.pdf", lambda tmp: b"%PDF-1.7\n" + bytes(range(256)) * 4, "corrupt or truncated PDF"),
        ("document.png", lambda tmp: blank_pages_pdf([(100, 100)]), "a PDF, not an image (name it .pdf to ingest its pages)"),
    ],
)
def test_unreadable_pdfs_are_skipped_with_their_reason(tmp_path, clip_embedder, name, make, reason):
    report, _ = _ingest_with_good_files(tmp_path, clip_embedder, name, make(tmp_path))
    assert len(report.skipped) == 1 and report.skipped[0].source.endswith(name), report.summary()
    assert reason in report.skipped[0].reason
    assert report.added == 2


def test_a_pdf_that_is_a_fifo_is_refused_without_hanging(tmp_path, clip_embedder):
    import os

    folder = tmp_path / "docs"
    folder.mkdir()
    os.mkfifo(folder / "pipe.pdf")
    report, _ = _ingest_with_good_files(tmp_path, clip_embedder, "real.pdf", blank_pages_pdf([(200, 200)]))
    assert len(report.skipped) == 1 and report.skipped[0].source.endswith("pipe.pdf"), report.summary()
    assert "not a regular file (FIFO)" in report.skipped[0].reason
    assert report.added == 3  # real.pdf, good.png, good.txt


def test_javascript_and_forms_are_never_run(tmp_path, clip_embedder, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("forms were initialised")

    monkeypatch.setattr(pypdfium2.PdfDocument, "init_forms", refuse)
    report, index = _ingest_with_good_files(tmp_path, clip_embedder, "scripted.pdf", javascript_and_form_pdf())
    assert report.ok and report.added == 3, report.summary()
    notes = " | ".join(n.note for n in report.notes)
    assert "JavaScript action(s): never run" in notes and "forms are never initialised" in notes
    (text,) = index.text_store.get(where={SOURCE: str(tmp_path / "docs" / "scripted.pdf")})
    assert text.document == "A form with scripts"


def test_a_broken_text_layer_and_title_are_repaired_and_noted(tmp_path, clip_embedder):
    data = page_with_text(b"(ABAx) Tj", to_unicode=BROKEN_CMAP, title=b"<FEFFD800>")
    report, index = _ingest_with_good_files(tmp_path, clip_embedder, "broken.pdf", data)
    assert report.ok, report.summary()
    (text,) = index.text_store.get(where={SOURCE: str(tmp_path / "docs" / "broken.pdf")})
    assert text.document == "\ufffdB\ufffdx" and text.metadata[TITLE] == "\ufffd"
    assert any("invalid Unicode in the text layer" in n.note for n in report.notes), report.notes


def test_control_characters_in_a_text_layer_become_spaces(tmp_path, clip_embedder):
    report, index = _ingest_with_good_files(tmp_path, clip_embedder, "nul.pdf", page_with_text(b"(a\\000b\\007c) Tj"))
    assert report.ok, report.summary()
    (text,) = index.text_store.get(where={SOURCE: str(tmp_path / "docs" / "nul.pdf")})
    assert "\x00" not in text.document and "\x07" not in text.document and text.document.startswith("a")


# --- generated corruptions: fast checks on the page reader, then the whole ingest --------------

def _read_all(path: Path) -> list[Entry | Skipped]:
    """Every entry the page reader makes of ``path``: pages rendered, page images stored, text chunked."""
    from mm_rag_components.chunking import GuardedSplitter, PlainSplitter

    splitter = GuardedSplitter(PlainSplitter(64, 8), fallback=PlainSplitter(64, 8), max_chunks=1000)
    reader = EntryReader(200_000, 1 << 20, 1 << 20, lambda: splitter)
    pages = PageReader(reader, 30.0, 50, PageImages(path.parent / "page-images"), DocumentLedger())
    return list(pages.entries(FoundFile(path, "pdf"), str(path), False, {}))


def _check(out: list[Entry | Skipped]) -> None:
    for item in out:
        assert isinstance(item, (Entry, Skipped))
        if isinstance(item, Skipped):
            assert item.reason and "unexpected error" not in item.reason, item
        else:
            assert all(m[PAGE] >= 1 for m in item.metadatas)
            assert all(Path(m[IMAGE_PATH]).is_file() for m in item.metadatas if IMAGE_PATH in m)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_truncated_or_flipped_pdfs_never_crash_the_page_reader(tmp_path, good_pdf, data):
    blob = bytearray(good_pdf)
    if data.draw(st.booleans(), label="truncate"):
        blob = blob[: data.draw(st.integers(0, len(blob)), label="cut")]
    for _ in range(data.draw(st.integers(0, 12), label="flips")):
        if blob:
            at = data.draw(st.integers(0, len(blob) - 1), label="at")
            blob[at] = data.draw(st.integers(0, 255), label="byte")
    path = tmp_path / "case.pdf"
    path.write_bytes(bytes(blob))
    with time_limit(30):
        _check(_read_all(path))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0.0, 1.0), flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=8))
def test_corrupt_pdfs_never_crash_ingest_nor_cost_the_good_files(tmp_path_factory, clip_embedder, good_pdf, cut, flips):
    blob = bytearray(good_pdf[: max(1, int(len(good_pdf) * cut))])
    for where, value in flips:
        blob[min(len(blob) - 1, int(where * len(blob)))] = value
    report, _ = _ingest_with_good_files(tmp_path_factory.mktemp("case"), clip_embedder, "case.pdf", bytes(blob))
    assert all("unexpected error" not in s.reason for s in report.skipped), report.summary()
    assert report.added >= 2
