"""PDF ingest: every page an image record and text records sharing one page id, page images stored
once by content, idempotent and incremental like files, with a clear line for every caveat."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mm_rag_components import MultimodalIndex
from mm_rag_components.pdf import PdfFile
from mm_rag_components.retrieval import retrieve
from mm_rag_components.types import IMAGE_PATH, MODALITY, PAGE, PAGE_COUNT, PAGE_ID, SHA256, SOURCE, TITLE

sys.path.insert(0, str(Path(__file__).parent))
from pdf_support import blank_pages_pdf, report_pdf  # noqa: E402


TEXTS = ["The harbour opens at dawn for the fishing boats.", "Quarterly sales rose in the northern region.",
         "", "A recipe for bread with three kinds of flour."]


def _index(tmp_path: Path, embedder, **options) -> MultimodalIndex:
    return MultimodalIndex(tmp_path / "db" / "chroma", image_embedder=embedder, page_dpi=40, **options)


def _records(index: MultimodalIndex, source: Path) -> dict[str, list[dict]]:
    return {m: [h.metadata for h in store.get(where={SOURCE: str(source)})] for m, store in
            (("image", index.image_store), ("text", index.text_store))}


def _page_images(index: MultimodalIndex) -> set[Path]:
    return set(Path(index.page_dir).rglob("*.jpg")) if index.page_dir and Path(index.page_dir).exists() else set()


@pytest.fixture()
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    report_pdf(folder / "report.pdf", TEXTS, title="Annual Report")
    report_pdf(folder / "untitled.pdf", ["Only one page here."])
    Image.new("RGB", (16, 12), (10, 200, 30)).save(folder / "green.png")
    (folder / "note.txt").write_text("a plain text file", encoding="utf-8")
    return folder


def test_each_page_is_an_image_and_its_text_sharing_one_page_id(tmp_path, docs, clip_embedder):
    index = _index(tmp_path, clip_embedder)
    report = index.ingest_folder(docs, show_progress=False)
    assert report.ok and (report.added, report.updated, report.unchanged) == (4, 0, 0), report.summary()
    records = _records(index, docs / "report.pdf")
    assert sorted(m[PAGE] for m in records["image"]) == [1, 2, 3, 4]
    assert sorted(m[PAGE] for m in records["text"]) == [1, 2, 4]  # page 3 has no text layer
    for meta in records["image"] + records["text"]:
        assert (meta[TITLE], meta[PAGE_COUNT], meta["file_name"]) == ("Annual Report", 4, "report.pdf")
    by_page = {m[PAGE]: m for m in records["image"]}
    for meta in records["text"]:
        assert meta[PAGE_ID] == by_page[meta[PAGE]][PAGE_ID]
    assert len({m[PAGE_ID] for m in records["image"]}) == 4
    # the page image: a real JPEG named by the sha256 of the rendered pixels, close to the rendering
    with PdfFile(docs / "report.pdf") as pdf:
        rendered = {n: pdf.page(n, dpi=40, max_pixels=None).image for n in (1, 2, 3, 4)}
    for meta in records["image"]:
        path, page = Path(meta[IMAGE_PATH]), rendered[meta[PAGE]]
        # the file is named by the rendered pixels; the record's sha256 is the file's bytes, as for any image file
        assert hashlib.sha256(f"{page.mode}{page.size}".encode() + page.tobytes()).hexdigest() == path.stem
        assert hashlib.sha256(path.read_bytes()).hexdigest() == meta[SHA256]
        with Image.open(path) as img:
            assert img.format == "JPEG" and img.size == page.size
            error = np.abs(np.asarray(img.convert("RGB"), dtype=np.int16) - np.asarray(page, dtype=np.int16)).mean()
            assert error < 3  # quality 92, no chroma subsampling
        assert path.parent.parent == Path(index.page_dir)
    assert Path(index.page_dir) == (tmp_path / "db" / "chroma-pages" / "mm_rag").resolve()
    assert {m[TITLE] for m in _records(index, docs / "untitled.pdf")["text"]} == {"untitled"}  # no title: the stem
    assert any("without a text layer" in n.note and n.note.endswith(": 3") for n in report.notes), report.notes
    # retrieval hands out the page image as the candidate's image, the document stays the source
    images = [c for c in retrieve(index, "harbour", modalities=["image"], top_k=10) if c.metadata.get(PAGE)]
    assert images and all(Path(c.image_path).is_file() and c.image_path.endswith(".jpg") for c in images)
    assert all(c.metadata[SOURCE].endswith(".pdf") for c in images)


def test_same_pdf_twice_adds_nothing(tmp_path, docs, clip_embedder):
    index = _index(tmp_path, clip_embedder)
    index.ingest_folder(docs, show_progress=False)
    counts, stored = index.count(), _page_images(index)
    again = index.ingest_folder(docs, show_progress=False)
    assert (again.added, again.updated, again.unchanged, again.records) == (0, 0, 4, 0), again.summary()
    assert index.count() == counts and _page_images(index) == stored


def test_a_changed_pdf_replaces_its_changed_pages_only(tmp_path, docs, clip_embedder):
    index = _index(tmp_path, clip_embedder)
    index.ingest_folder(docs, show_progress=False)
    before = _records(index, docs / "report.pdf")
    old_ids = {m[PAGE]: m[PAGE_ID] for m in before["image"]}
    report_pdf(docs / "report.pdf", [TEXTS[0], "Quarterly sales fell in the northern region.", *TEXTS[2:]], title="Annual Report")
    report = index.ingest_folder(docs, show_progress=False)
    assert (report.added, report.updated, report.unchanged) == (0, 1, 3), report.summary()
    after = _records(index, docs / "report.pdf")
    new_ids = {m[PAGE]: m[PAGE_ID] for m in after["image"]}
    assert new_ids[1] == old_ids[1] and new_ids[3] == old_ids[3] and new_ids[2] != old_ids[2]
    assert report.records == 2  # page 2: its image and its one chunk
    assert [m["page"] for m in after["text"] if "fell" in str(m)] == [] and len(after["text"]) == 3
    texts = {h.document for h in index.text_store.get(where={SOURCE: str(docs / "report.pdf")})}
    assert "Quarterly sales fell in the northern region." in texts and not any("rose" in t for t in texts)
    assert _page_images(index) == {Path(m[IMAGE_PATH]) for m in after["image"]} | _other_page_images(index, docs)


def _other_page_images(index: MultimodalIndex, docs: Path) -> set[Path]:
    return {Path(m[IMAGE_PATH]) for m in _records(index, docs / "untitled.pdf")["image"]}


def test_fewer_pages_drop_the_old_pages_and_their_images(tmp_path, docs, clip_embedder):
    index = _index(tmp_path, clip_embedder)
    index.ingest_folder(docs, show_progress=False)
    report_pdf(docs / "report.pdf", TEXTS[:2], title="Annual Report")
    report = index.ingest_folder(docs, show_progress=False)
    assert report.updated == 1, report.summary()
    after = _records(index, docs / "report.pdf")
    assert sorted(m[PAGE] for m in after["image"]) == [1, 2] and {m[PAGE_COUNT] for m in after["image"]} == {2}
    assert _page_images(index) == {Path(m[IMAGE_PATH]) for m in after["image"]} | _other_page_images(index, docs)


def test_delete_missing_and_delete_remove_pages_and_their_images(tmp_path, docs, clip_embedder):
    index = _index(tmp_path, clip_embedder)
    index.ingest_folder(docs, show_progress=False)
    (docs / "report.pdf").unlink()
    report = index.ingest_folder(docs, show_progress=False, delete_missing=True)
    assert report.deleted == 7, report.summary()  # 4 page images, 3 text chunks
    assert _records(index, docs / "report.pdf") == {"image": [], "text": []}
    assert _page_images(index) == _other_page_images(index, docs) and len(_page_images(index)) == 1
    assert index.delete(docs / "untitled.pdf") == 2
    assert _page_images(index) == set()
    assert index.count() == {"image": 1, "text": 1}  # green.png and note.txt stay


def test_identical_pages_share_one_stored_image(tmp_path, clip_embedder):
    folder = tmp_path / "docs"
    report_pdf(folder / "a.pdf", ["same page"])
    report_pdf(folder / "b.pdf", ["same page"])
    index = _index(tmp_path, clip_embedder)
    assert index.ingest_folder(folder, show_progress=False).added == 2
    assert len(_page_images(index)) == 1
    index.delete(folder / "a.pdf")
    assert len(_page_images(index)) == 1  # b.pdf still names it
    index.delete(folder / "b.pdf")
    assert _page_images(index) == set()


def test_text_only_pages_need_no_image_folder(tmp_path, docs, clip_embedder):
    import chromadb

    client = chromadb.EphemeralClient()
    index = MultimodalIndex(None, client=client, image_embedder=clip_embedder, page_images=False, collection="textonly")
    report = index.ingest_folder(docs, show_progress=False)
    assert report.ok, report.summary()
    assert index.count() == {"image": 1, "text": 5}  # green.png; report.pdf 3 + untitled 1 + note.txt
    assert any("nothing stored for them: 3" in n.note for n in report.notes), report.notes


def test_without_a_page_folder_pdfs_are_skipped_and_the_rest_kept(tmp_path, docs, clip_embedder):
    import chromadb

    index = MultimodalIndex(None, client=chromadb.EphemeralClient(), image_embedder=clip_embedder, collection="nofolder")
    report = index.ingest_folder(docs, show_progress=False)
    assert {Path(s.source).name for s in report.skipped} == {"report.pdf", "untitled.pdf"}
    assert all("page_dir" in s.reason for s in report.skipped)
    assert report.added == 2 and index.count() == {"image": 1, "text": 1}


def test_dpi_is_configurable_and_bounded_by_max_pixels(tmp_path, docs, clip_embedder):
    sizes = {}
    for dpi, max_pixels in ((36, None), (72, None), (72, 50_000)):
        index = MultimodalIndex(tmp_path / f"db-{dpi}-{max_pixels}", image_embedder=clip_embedder, page_dpi=dpi, max_pixels=max_pixels)
        report = index.ingest_paths([docs / "untitled.pdf"], show_progress=False)
        (meta,) = _records(index, docs / "untitled.pdf")["image"]
        with Image.open(meta[IMAGE_PATH]) as img:
            sizes[(dpi, max_pixels)] = img.size
        lowered = [n.note for n in report.notes if "rendered at" in n.note]
        assert bool(lowered) == (max_pixels is not None), report.notes
    assert sizes[(36, None)] == (298, 421) and sizes[(72, None)] == (596, 842)  # A4 is 595.28 x 841.89 points
    width, height = sizes[(72, 50_000)]
    assert width * height <= 50_000 and width > 100


def test_max_pages_per_file_is_a_noted_cap(tmp_path, clip_embedder):
    folder = tmp_path / "docs"
    report_pdf(folder / "long.pdf", [f"page number {i}" for i in range(1, 6)])
    index = _index(tmp_path, clip_embedder, max_pages_per_file=3)
    report = index.ingest_folder(folder, show_progress=False)
    assert report.added == 1 and index.count() == {"image": 3, "text": 3}
    assert any("first 3 of 5 pages" in n.note and "max_pages_per_file=3" in n.note for n in report.notes), report.notes


def test_missing_pypdfium2_is_one_line_naming_the_extra(tmp_path, docs, clip_embedder, monkeypatch):
    monkeypatch.setitem(sys.modules, "pypdfium2", None)  # `import pypdfium2` now raises ImportError
    index = _index(tmp_path, clip_embedder)
    report = index.ingest_folder(docs, show_progress=False)
    reasons = {s.reason for s in report.skipped}
    assert reasons == {"PDF ingest needs pypdfium2: pip install 'mm-rag-components[pdf]'"}
    assert len(report.skipped) == 2 and report.added == 2  # the image and the text are kept


def test_ingest_paths_takes_a_pdf_and_its_folder_adds_nothing_more(tmp_path, docs, clip_embedder):
    index = _index(tmp_path, clip_embedder)
    first = index.ingest_paths([docs / "report.pdf"], show_progress=False)
    assert first.added == 1 and index.count() == {"image": 4, "text": 3}
    again = index.ingest_paths([docs], show_progress=False)
    assert again.unchanged == 1 and again.added == 3, again.summary()


def test_cli_ingest_reads_pdfs(tmp_path, docs, capsys):
    from mm_rag_components.cli import main

    db = str(tmp_path / "cli-db")
    assert main(["ingest", str(docs), "--tiny", "--db", db, "--page-dpi", "30", "--max-pages-per-file", "2"]) == 0
    out = capsys.readouterr().out
    assert "added 4" in out and "first 2 of 4 pages" in out, out


def test_the_progress_bar_counts_files_not_pages(tmp_path, clip_embedder, monkeypatch):
    import tqdm.auto

    seen = []

    class Bar(tqdm.auto.tqdm):
        def close(self):
            seen.append((self.n, self.total))
            super().close()

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    folder = tmp_path / "docs"
    report_pdf(folder / "three.pdf", ["one", "two", "three"])
    (folder / "x.txt").write_text("text", encoding="utf-8")
    _index(tmp_path, clip_embedder).ingest_folder(folder, show_progress=True)
    assert seen and set(seen) == {(2, 2)}  # two files, not four entries


def test_a_page_pdf_of_any_size_renders_within_the_limit(tmp_path, clip_embedder):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "sizes.pdf").write_bytes(blank_pages_pdf([(612, 792), (0.01, 0.01), (1e6, 1e6), (1, 5000)]))
    index = MultimodalIndex(tmp_path / "db", image_embedder=clip_embedder, max_pixels=40_000)
    report = index.ingest_folder(folder, show_progress=False)
    assert report.ok and report.added == 1, report.summary()
    images = {m[PAGE]: m for m in _records(index, folder / "sizes.pdf")["image"]}
    assert sorted(images) == [1, 2, 3]  # page 4 is over 50:1: not rendered (noted)
    for meta in images.values():
        with Image.open(meta[IMAGE_PATH]) as img:
            assert img.width * img.height <= 40_000
    notes = " | ".join(n.note for n in report.notes)
    assert "over 50:1" in notes and "rendered at" in notes and "nothing stored for them: 4" in notes
    assert {m[MODALITY] for m in images.values()} == {"image"}


def test_page_options_are_checked_and_survive_a_saved_config(tmp_path, clip_embedder):
    from mm_rag_components import config
    from mm_rag_components.errors import ConfigError

    index = _index(tmp_path, clip_embedder, max_pages_per_file=7, page_images=False)
    rebuilt = config.from_dict(config.to_dict(index))
    assert (rebuilt.page_dpi, rebuilt.max_pages_per_file, rebuilt.page_images, rebuilt.page_dir) == (40.0, 7, False, index.page_dir)
    for bad in ({"page_dpi": 0}, {"page_dpi": "high"}, {"max_pages_per_file": 0}, {"page_images": "yes"}):
        with pytest.raises(ConfigError):
            MultimodalIndex(tmp_path / "db2", image_embedder=clip_embedder, **bad)


def test_a_page_text_over_the_byte_limit_keeps_its_image(tmp_path, clip_embedder):
    folder = tmp_path / "docs"
    report_pdf(folder / "wordy.pdf", ["short", "word " * 400])
    index = _index(tmp_path, clip_embedder, max_text_bytes=1000)
    report = index.ingest_folder(folder, show_progress=False)
    assert report.ok and index.count() == {"image": 2, "text": 1}, report.summary()
    assert any("page 2: text layer not stored" in n.note and "max_text_bytes" in n.note for n in report.notes), report.notes


def test_the_web_chat_serves_a_page_image_and_refuses_a_replaced_one(tmp_path, docs, clip_embedder):
    """A page's image record names its JPEG and the sha256 of its bytes, so /media serves it after
    the same checks as any ingested image (and refuses it once the file is not what was stored)."""
    from starlette.testclient import TestClient

    from mm_rag_components.app.pipeline import QAPipeline
    from mm_rag_components.app.web import create_app

    index = _index(tmp_path, clip_embedder)
    index.ingest_folder(docs, show_progress=False)
    hit = next(h for h in index.image_store.get(where={SOURCE: str((docs / "report.pdf").resolve())}) if h.metadata.get(PAGE) == 2)
    path = Path(hit.metadata[IMAGE_PATH])
    client = TestClient(create_app(QAPipeline(index)), base_url="http://localhost")
    reply = client.get(f"/media/{hit.id}")
    assert reply.status_code == 200 and reply.content == path.read_bytes()
    assert reply.headers["content-type"] == "image/jpeg"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(path, format="JPEG")  # the file changed behind the index
    assert client.get(f"/media/{hit.id}").status_code == 404


def test_a_wrapped_paragraph_reads_back_as_lines_not_carriage_returns(tmp_path, clip_embedder):
    """pdfium ends each line of the text layer with ``\\r\\n``; the stored text has plain newlines."""
    long = " ".join(["The report lists every harbour, its boats and the hours it opens for them."] * 4)
    pdf = report_pdf(tmp_path / "docs" / "wrapped.pdf", [long])
    index = _index(tmp_path, clip_embedder)
    index.ingest_paths([pdf], show_progress=False)
    chunks = [h.document for h in index.text_store.get(where={SOURCE: str(pdf.resolve())})]
    assert chunks and not any("\r" in chunk for chunk in chunks)
    assert any("\n" in chunk for chunk in chunks)  # the paragraph wraps over several lines
