"""Ingest end to end on embedded Chroma: idempotence, updates, deletion, bad files, streaming,
persistence across processes. Logic runs on a fake colour/shape embedder; the plumbing also on
a tiny random-weight CLIP."""

import io
import subprocess
import sys
import textwrap
import weakref

import pytest
from fake_models import ColourShapeEmbedder, WordHashEmbedder
from PIL import Image

import mm_rag_components.ingest as ingest_module
from mm_rag_components import Item, MultimodalIndex
from mm_rag_components.errors import ConfigError, ModelError, StoreError
from mm_rag_components.retrieval import retrieve


@pytest.fixture()
def fake():
    return ColourShapeEmbedder()


@pytest.fixture()
def index(tmp_path, fake):
    return MultimodalIndex(tmp_path / "db", image_embedder=fake, batch_size=5)


def test_ingest_folder_then_reingest_embeds_nothing(index, fake, sample_folder):
    first = index.ingest_folder(sample_folder)
    assert (first.added, first.updated, first.unchanged, first.records, first.skipped) == (15, 0, 0, 15, [])
    assert index.count() == {"image": 12, "text": 3}
    fake.calls.clear()
    second = index.ingest_folder(sample_folder)
    assert (second.added, second.updated, second.unchanged, second.records) == (0, 0, 15, 0)
    assert fake.calls == []
    assert index.count() == {"image": 12, "text": 3}
    record = index.image_store.get(where={"file_name": "red_circle.png"})[0]
    assert record.metadata["modality"] == "image" and record.metadata["source"] == str(sample_folder / "red_circle.png")
    assert len(record.metadata["sha256"]) == 64 and record.document is None


def test_changed_file_is_updated_not_duplicated(index, fake, sample_folder):
    index.ingest_folder(sample_folder)
    old = index.image_store.get(where={"file_name": "red_circle.png"})[0]
    Image.new("RGB", (50, 50), (0, 0, 0)).save(sample_folder / "red_circle.png")
    (sample_folder / "cats.txt").write_text("Cats purr. " * 3, encoding="utf-8")
    fake.calls.clear()
    report = index.ingest_folder(sample_folder)
    assert (report.updated, report.unchanged, report.added, report.records) == (2, 13, 0, 2)
    assert sorted(fake.calls) == [("image", 1), ("text", 1)]  # only the changed files were embedded
    assert index.count() == {"image": 12, "text": 3}
    new = index.image_store.get(where={"file_name": "red_circle.png"})
    assert len(new) == 1 and new[0].id != old.id and new[0].metadata["sha256"] != old.metadata["sha256"]
    assert [h.document for h in index.text_store.get(where={"file_name": "cats.txt"})] == ["Cats purr. Cats purr. Cats purr."]


def test_long_text_is_chunked_and_shrinking_it_removes_stale_chunks(index, tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    sentences = " ".join(f"Sentence number {i} talks about topic {i}." for i in range(60))
    (folder / "long.md").write_text(sentences, encoding="utf-8")
    index.ingest_folder(folder)
    chunks = index.text_store.get(where={"file_name": "long.md"})
    assert len(chunks) > 3
    assert sorted(h.metadata["chunk"] for h in chunks) == list(range(len(chunks)))
    assert all(h.document and len(h.document.split()) < 80 for h in chunks)  # CLIP-sized chunks
    (folder / "long.md").write_text("Now it is short.", encoding="utf-8")
    report = index.ingest_folder(folder)
    assert report.updated == 1
    assert [h.document for h in index.text_store.get(where={"file_name": "long.md"})] == ["Now it is short."]


def test_delete_by_source_by_ids_and_missing_files(index, sample_folder):
    index.ingest_folder(sample_folder)
    assert index.delete(sample_folder / "blue_circle.png") == 1
    assert index.delete(str(sample_folder / "blue_circle.png")) == 0
    green = index.image_store.get(where={"file_name": "green_circle.png"})[0]
    assert index.delete(ids=[green.id]) == 1
    (sample_folder / "green_square.png").unlink()
    (sample_folder / "trains.md").unlink()
    report = index.ingest_folder(sample_folder, delete_missing=True)
    assert report.deleted == 2 and report.added == 2  # blue_circle and green_circle back
    assert index.count() == {"image": 11, "text": 2}
    with pytest.raises(ConfigError):
        index.delete()


def test_delete_missing_respects_recursive_false(index, sample_folder):
    sub = sample_folder / "sub"
    sub.mkdir()
    Image.new("RGB", (40, 40), (30, 60, 220)).save(sub / "deep.png")
    assert index.ingest_folder(sample_folder).added == 16
    top = index.ingest_folder(sample_folder, recursive=False, delete_missing=True)
    assert top.deleted == 0 and top.unchanged == 15  # the file in sub/ is not "missing"
    (sub / "deep.png").unlink()
    assert index.ingest_folder(sample_folder, delete_missing=True).deleted == 1


def test_bad_files_are_reported_and_good_ones_kept(index, sample_folder):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (9, 9, 9)).save(buf, format="PNG")
    (sample_folder / "truncated.png").write_bytes(buf.getvalue()[:70])
    (sample_folder / "zero.jpg").write_bytes(b"")
    (sample_folder / "notes.jpg").write_text("I am text pretending to be a JPEG")
    (sample_folder / "corrupt.webp").write_bytes(b"RIFF\x00\x00\x00\x00WEBPgarbage")
    Image.new("RGB", (2000, 1000)).save(sample_folder / "huge.png")
    (sample_folder / "dangling.png").symlink_to(sample_folder / "gone.png")
    (sample_folder / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (sample_folder / "empty.md").write_text("   \n")
    (sample_folder / "ignored.csv").write_text("a,b\n1,2\n")
    Image.new("RGB", (40, 40), (30, 170, 60)).save(sample_folder / "really_a_png.jpg")  # misnamed but valid
    index.max_pixels = 1_000_000
    report = index.ingest_folder(sample_folder)
    reasons = {source.rsplit("/", 1)[-1]: reason for source, reason in report.skipped}
    assert set(reasons) == {
        "truncated.png", "zero.jpg", "notes.jpg", "corrupt.webp", "huge.png", "dangling.png", "latin1.txt", "empty.md"
    }
    assert "exceeds the limit" in reasons["huge.png"]
    assert "truncated" in reasons["truncated.png"]
    assert "not a recognised image" in reasons["notes.jpg"]
    assert "UTF-8" in reasons["latin1.txt"]
    assert "empty" in reasons["zero.jpg"] and "empty" in reasons["empty.md"]
    assert "no such file" in reasons["dangling.png"]
    assert report.added == 16 and report.ignored == 1
    assert index.count() == {"image": 13, "text": 3}
    assert "skipped 8" in report.summary() and "huge.png" in report.summary() and not report.ok


def test_an_input_the_model_rejects_does_not_drop_its_batch(tmp_path, sample_folder):
    fake = ColourShapeEmbedder(fail_on=lambda img: img.size == (13, 13))
    index = MultimodalIndex(tmp_path / "db", image_embedder=fake, batch_size=4)
    Image.new("RGB", (13, 13), (220, 30, 30)).save(sample_folder / "blue_odd.png")  # sorts among the blues
    report = index.ingest_folder(sample_folder)
    assert [(s.rsplit("/", 1)[-1], "embedding failed" in r) for s, r in report.skipped] == [("blue_odd.png", True)]
    assert index.count() == {"image": 12, "text": 3} and report.added == 15
    retried = [("image", 4)] + [("image", 1)] * 4  # the failing batch, retried singly
    assert any(fake.calls[i : i + 5] == retried for i in range(len(fake.calls))), fake.calls


def test_a_broken_model_aborts_instead_of_skipping_everything(tmp_path, sample_folder):
    class Broken(ColourShapeEmbedder):
        def embed_images(self, images, **kwargs):
            raise ModelError("weights missing")

    with pytest.raises(ModelError, match="weights missing"):
        MultimodalIndex(tmp_path / "db", image_embedder=Broken()).ingest_folder(sample_folder)


def test_ingest_streams_with_bounded_decoded_images(tmp_path, monkeypatch):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(30):
        Image.new("RGB", (32, 32), (8 * i, 100, 200)).save(folder / f"{i:02d}.png")
    alive = [0]
    peaks: list[int] = []
    real_decode = ingest_module.decode_image

    def tracking_decode(*args, **kwargs):
        image = real_decode(*args, **kwargs)
        alive[0] += 1
        weakref.finalize(image, lambda: alive.__setitem__(0, alive[0] - 1))
        return image

    monkeypatch.setattr(ingest_module, "decode_image", tracking_decode)
    fake = ColourShapeEmbedder()
    fake.on_batch = lambda: peaks.append(alive[0])
    index = MultimodalIndex(tmp_path / "db", image_embedder=fake, batch_size=4)
    assert index.ingest_folder(folder).added == 30
    assert len(peaks) == 8 and max(peaks) <= 4
    assert all(n <= 4 for kind, n in fake.calls)


def test_items_are_consumed_lazily(index, fake):
    pulled: list[int] = []

    def items():
        for i in range(12):
            pulled.append(i)
            yield Item(text=f"note {i} about a red circle", source=f"memo://{i}")

    pulled_at_embed: list[int] = []
    original = fake.embed_texts

    def embed_texts(texts, **kwargs):
        pulled_at_embed.append(len(pulled))
        return original(texts, **kwargs)

    fake.embed_texts = embed_texts
    assert index.ingest(items()).added == 12
    assert pulled_at_embed[0] == 5  # one window of batch_size items, not the whole stream
    assert pulled_at_embed == [5, 10, 12]


def test_ingest_items_with_metadata_captions_and_sources(index):
    items = [
        Item(image=Image.new("RGB", (30, 30), (1, 2, 3)), text="a dark square", metadata={"tags": ["x", "y"], "year": 2024}),
        Item(text="Free text about rivers.", source="memo://1", metadata={"year": 2023, "info": {"lang": "en"}}),
        Item(text="Bad metadata.", metadata={"modality": "audio"}),
        "not an item",
    ]
    report = index.ingest(items)
    assert report.added == 2 and [s.source for s in report.skipped] == ["item #2", "item #3"]
    assert "reserved" in report.skipped[0].reason
    image = index.image_store.get(where={"year": 2024})[0]
    assert image.document == "a dark square" and image.metadata["tags"] == ["x", "y"]
    assert "source" not in image.metadata
    assert all("base64" not in str(v) and len(str(v)) < 200 for v in image.metadata.values())
    text = index.text_store.get(where={"source": "memo://1"})[0]
    assert text.metadata["info.lang"] == "en" and text.metadata["file_name"] == "1"
    assert index.ingest(items[:2]).unchanged == 2
    replaced = index.ingest([Item(text="Rivers flow to the sea.", source="memo://1")])
    assert replaced.updated == 1
    assert [h.document for h in index.text_store.get(where={"source": "memo://1"})] == ["Rivers flow to the sea."]
    assert index.delete("memo://1") == 1


def test_same_source_twice_in_one_run_keeps_the_last(index):
    report = index.ingest([Item(text="first version", source="doc://a"), Item(text="second version", source="doc://a")])
    assert (report.added, report.updated) == (1, 1)
    assert [h.document for h in index.text_store.get(where={"source": "doc://a"})] == ["second version"]


def test_image_items_from_paths_bytes_and_base64(index, sample_folder):
    import base64

    data = (sample_folder / "red_square.png").read_bytes()
    report = index.ingest(
        [Item(image=sample_folder / "red_square.png"), Item(image=data, source="bytes://1"),
         Item(image=base64.b64encode(data).decode(), source="b64://1"), Item(image="http://example.invalid/x.png")]
    )
    assert report.added == 3
    assert "allow_urls" in report.skipped[0].reason
    assert index.count()["image"] == 3


def test_invalid_arguments_are_config_errors(tmp_path, fake, sample_folder):
    with pytest.raises(ConfigError):
        MultimodalIndex(tmp_path / "db", image_embedder=WordHashEmbedder())
    with pytest.raises(ConfigError):
        MultimodalIndex(tmp_path / "db", image_embedder=fake, batch_size=0)
    index = MultimodalIndex(tmp_path / "db", image_embedder=fake)
    with pytest.raises(ConfigError):
        index.ingest_folder(tmp_path / "nope")
    with pytest.raises(ConfigError, match="reserved"):
        index.ingest_folder(sample_folder, metadata={"source": "x"})


def test_separate_text_embedder_gets_its_own_collection(tmp_path, fake, sample_folder):
    words = WordHashEmbedder()
    index = MultimodalIndex(tmp_path / "db", image_embedder=fake, text_embedder=words)
    index.ingest_folder(sample_folder)
    assert index.count() == {"image": 12, "text": 3}
    assert index.text_store.dimension == 24 and index.image_store.dimension == 32
    assert {kind for kind, _ in fake.calls} == {"image"} and {kind for kind, _ in words.calls} == {"text"}


# --- the same plumbing with a real (tiny, random-weight) CLIP through sentence-transformers ---

def test_tiny_clip_ingest_is_idempotent(tmp_path, clip_embedder, sample_folder):
    index = MultimodalIndex(tmp_path / "db", image_embedder=clip_embedder, batch_size=5)
    assert index.ingest_folder(sample_folder).added == 15
    assert index.count() == {"image": 12, "text": 3}
    assert index.ingest_folder(sample_folder).unchanged == 15


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
    from mm_rag_components.types import Query

    reopened = MultimodalIndex(tmp_path / "db", image_embedder=ClipEmbedder(tiny_clip_dir))
    assert reopened.count() == {"image": 12, "text": 3}
    assert reopened.ingest_folder(sample_folder).unchanged == 15
    top = retrieve(reopened, Query(image=sample_folder / "blue_square.png"), modalities=["image"], top_k=1)[0]
    assert top.image_path == str(sample_folder / "blue_square.png")


def test_reopening_with_another_embedder_is_refused(tmp_path, clip_embedder, sample_folder):
    from mm_rag_components import ClipEmbedder
    from mm_rag_components.testing import build_tiny_clip

    MultimodalIndex(tmp_path / "db", image_embedder=clip_embedder).ingest_folder(sample_folder)
    other = ClipEmbedder(build_tiny_clip(tmp_path / "other", projection_dim=16))
    with pytest.raises(StoreError, match="was built with embedder"):
        MultimodalIndex(tmp_path / "db", image_embedder=other).count()


def test_config_keeps_the_ingest_limits_and_refuses_a_custom_splitter(tmp_path, fake):
    from mm_rag_components.chunking import PlainSplitter

    index = MultimodalIndex(tmp_path / "db", image_embedder=fake, max_text_bytes=1000, max_chunks_per_file=7,
                            follow_external_symlinks=True)
    config = index.config()
    assert (config["max_text_bytes"], config["max_chunks_per_file"], config["follow_external_symlinks"]) == (1000, 7, True)
    with pytest.raises(ConfigError, match="custom splitter"):
        MultimodalIndex(tmp_path / "db", image_embedder=fake, splitter=PlainSplitter()).config()
