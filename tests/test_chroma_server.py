"""A real Chroma server (`chroma run` on 127.0.0.1) used through HttpClient, then stopped."""

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
from fake_models import ColourShapeEmbedder

from mm_rag_components import MultimodalIndex, Query
from mm_rag_components.errors import BackendError, StoreError
from mm_rag_components.retrieval import RetrievalOptions, retrieve
from mm_rag_components.store import make_client
from mm_rag_components.testing.servers import free_port, start_server


@contextlib.contextmanager
def chroma_run(data: Path, log: Path):
    """Start `chroma run` (the CLI beside this interpreter), wait for its heartbeat, stop it after."""
    chroma = Path(sys.executable).with_name("chroma")
    assert chroma.exists(), "the chroma CLI ships with chromadb"
    port = free_port()
    try:
        proc = start_server([str(chroma), "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)], log,
                            f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=180)  # a hang guard
    except BackendError as exc:
        pytest.fail(f"chroma server did not start: {exc}")
    try:
        yield proc, port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("chroma")
    with chroma_run(root / "data", root / "server.log") as (_, port):
        yield port


def test_index_and_retrieve_through_http_client(chroma_server, clip_embedder, sample_folder):
    index = MultimodalIndex(None, host="127.0.0.1", port=chroma_server, image_embedder=clip_embedder, collection="served")
    assert index.ingest_folder(sample_folder).added == 15
    result = retrieve(index, Query(image=sample_folder / "red_triangle.png"), RetrievalOptions(modalities=["image"], top_k=1))
    assert result[0].image_path == str(sample_folder / "red_triangle.png")
    assert result[0].score == pytest.approx(1.0, abs=1e-4)
    again = MultimodalIndex(None, host="127.0.0.1", port=chroma_server, image_embedder=clip_embedder, collection="served")
    assert again.ingest_folder(sample_folder).unchanged == 15
    assert again.delete(sample_folder / "red_triangle.png") == 1
    assert again.count() == {"image": 11, "text": 3}


def test_filters_and_embedder_check_on_the_server(chroma_server, sample_folder):
    index = MultimodalIndex(None, host="127.0.0.1", port=chroma_server, image_embedder=ColourShapeEmbedder(), collection="fake")
    index.ingest_folder(sample_folder, metadata={"batch": "one"})
    hits = retrieve(index, "a green square", modalities=["image"], top_k=3, where={"batch": "one"})
    assert hits[0].image_path.endswith("green_square.png")
    assert retrieve(index, "green", where={"batch": "two"}) == []
    other = MultimodalIndex(None, host="127.0.0.1", port=chroma_server, image_embedder=ColourShapeEmbedder(name="another"), collection="fake")
    with pytest.raises(StoreError, match="was built with embedder 'fake-colour-shape'"):
        other.count()


def test_server_going_away_is_a_store_error(tmp_path, sample_folder):
    with chroma_run(tmp_path / "data", tmp_path / "server.log") as (proc, port):
        index = MultimodalIndex(None, host="127.0.0.1", port=port, image_embedder=ColourShapeEmbedder(), collection="brief")
        assert index.ingest_folder(sample_folder).added == 15
        proc.terminate()
        proc.wait(timeout=120)
        with pytest.raises(StoreError, match=r"Chroma query on collection 'brief(-text)?' failed: "):
            retrieve(index, "red")


def test_unreachable_server_is_a_store_error():
    port = free_port()
    with pytest.raises(StoreError, match=f"127.0.0.1:{port}"):
        make_client(None, host="127.0.0.1", port=port)
