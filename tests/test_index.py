"""Ingest end to end on embedded Chroma: idempotence, updates, deletion, bad files, persistence."""

import io
import subprocess
import sys
import textwrap

import pytest
from PIL import Image

from mm_rag_components import Item, MultimodalIndex
from mm_rag_components.errors import ConfigError, StoreError


@pytest.fixture()
def index(tmp_path, clip_embedder):
    return MultimodalIndex(tmp_path / "db", image_embedder=clip_embedder, batch_size=5)


def test_ingest_folder_then_reingest_is_a_noop(index, sample_folder):
    first = index.ingest_folder(sample_folder)
    assert first.added == 15 and first.skipped == [] and first.records == 15
    assert index.count() == {"image": 12, "text": 3}
    calls = []
    original = index.image_embedder.embed_images
    index.image_embedder.embed_images = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        second = index.ingest_folder(sample_folder)
    finally:
        del index.image_embedder.embed_images
    assert (second.added, second.unchanged, second.records) == (0, 15, 0)
    assert calls == []
    assert index.count() == {"image": 12, "text": 3}


def test_changed_file_is_updated_not_duplicated(index, sample_folder):
    index.ingest_folder(sample_folder)
    Image.new("RGB", (50, 50), (0, 0, 0)).save(sample_folder / "red_circle.png")
    (sample_folder / "cats.txt").write_text("Cats purr. " * 3, encoding="utf-8")
    report = index.ingest_folder(sample_folder)
    assert (report.updated, report.unchanged, report.added) == (2, 13, 0)
    assert index.count() == {"image": 12, "text": 3}
    hits = index.image_store.get(where={"file_name": "red_circle.png"})
    assert len(hits) == 1


def test_deleting_by_source_and_missing_files(index, sample_folder):
    index.ingest_folder(sample_folder)
    assert index.delete(source=sample_folder / "blue_circle.png") == 1
    (sample_folder / "green_square.png").unlink()
    (sample_folder / "trains.md").unlink()
    report = index.ingest_folder(sample_folder, delete_missing=True)
    assert report.deleted == 2 and report.added == 1  # blue_circle re-added
    assert index.count() == {"image": 11, "text": 2}
    with pytest.raises(ConfigError):
        index.delete()


def test_bad_files_are_reported_and_good_ones_kept(index, sample_folder):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (9, 9, 9)).save(buf, format="PNG")
    (sample_folder / "truncated.png").write_bytes(buf.getvalue()[:70])
    (sample_folder / "zero.jpg").write_bytes(b"")
    (sample_folder / "notes.jpg").write_text("I am text pretending to be a JPEG")
    (sample_folder / "corrupt.webp").write_bytes(b"RIFF\x00\x00\x00\x00WEBPgarbage")
    Image.new("RGB", (2000, 1000)).save(sample_folder / "huge.png")
    (sample_folder / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (sample_folder / "empty.md").write_text("   \n")
    (sample_folder / "ignored.csv").write_text("a,b\n1,2\n")
    index.max_pixels = 1_000_000
    report = index.ingest_folder(sample_folder)
    reasons = {s.source.rsplit("/", 1)[-1]: s.reason for s in report.skipped}
    assert set(reasons) == {"truncated.png", "zero.jpg", "notes.jpg", "corrupt.webp", "huge.png", "latin1.txt", "empty.md"}
    assert "exceeds the limit" in reasons["huge.png"]
    assert "UTF-8" in reasons["latin1.txt"]
    assert "empty" in reasons["zero.jpg"]
    assert report.added == 15 and report.ignored == 1
    assert index.count() == {"image": 12, "text": 3}
    assert "skipped" in report.summary() and not report.ok


def test_ingest_items_with_metadata_and_captions(index, sample_folder):
    items = [
        Item(image=Image.new("RGB", (30, 30), (1, 2, 3)), text="a dark square", metadata={"tags": ["x", "y"], "year": 2024}),
        Item(text="Free text about rivers.", source="memo://1", metadata={"year": 2023}),
        "not an item",
    ]
    report = index.ingest(items)
    assert report.added == 2 and len(report.skipped) == 1
    image = index.image_store.get(where={"year": 2024})[0]
    assert image.document == "a dark square" and image.metadata["tags"] == '["x", "y"]'
    assert all("base64" not in str(v) and len(str(v)) < 200 for v in image.metadata.values())
    assert index.ingest(items[:2]).unchanged == 2


def test_index_persists_across_processes(tmp_path, tiny_clip_dir, sample_folder):
    script = textwrap.dedent(
        f"""
        from mm_rag_components import MultimodalIndex, ClipEmbedder
        index = MultimodalIndex({str(tmp_path / "db")!r}, image_embedder=ClipEmbedder({str(tiny_clip_dir)!r}))
        print(index.ingest_folder({str(sample_folder)!r}).added)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "15"
    from mm_rag_components import ClipEmbedder

    reopened = MultimodalIndex(tmp_path / "db", image_embedder=ClipEmbedder(tiny_clip_dir))
    assert reopened.count() == {"image": 12, "text": 3}
    assert reopened.ingest_folder(sample_folder).unchanged == 15


def test_reopening_with_another_embedder_is_refused(tmp_path, clip_embedder, sample_folder):
    from mm_rag_components import ClipEmbedder
    from mm_rag_components.testing import build_tiny_clip

    MultimodalIndex(tmp_path / "db", image_embedder=clip_embedder).ingest_folder(sample_folder)
    other = ClipEmbedder(build_tiny_clip(tmp_path / "other", projection_dim=16))
    with pytest.raises(StoreError, match="was built with embedder"):
        MultimodalIndex(tmp_path / "db", image_embedder=other).count()


def test_folder_must_exist(index, tmp_path):
    with pytest.raises(ConfigError):
        index.ingest_folder(tmp_path / "nope")
