"""A real Chroma server (`chroma run` on 127.0.0.1) used through HttpClient."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mm_rag_components import MultimodalIndex, Query
from mm_rag_components.errors import StoreError
from mm_rag_components.retrieval import RetrievalOptions, retrieve
from mm_rag_components.store import make_client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    chroma = Path(sys.executable).with_name("chroma")
    assert chroma.exists(), "the chroma CLI ships with chromadb"
    port = free_port()
    log = tmp_path_factory.mktemp("chroma-log") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(chroma), "run", "--path", str(tmp_path_factory.mktemp("chroma-data")), "--host", "127.0.0.1", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"chroma server did not start: {log.read_text()[-2000:]}")
                time.sleep(0.3)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_index_and_retrieve_through_http_client(chroma_server, clip_embedder, sample_folder):
    index = MultimodalIndex(None, host="127.0.0.1", port=chroma_server, image_embedder=clip_embedder, collection="served")
    assert index.ingest_folder(sample_folder).added == 15
    result = retrieve(index, Query(image=sample_folder / "red_triangle.png"), RetrievalOptions(modalities=["image"], top_k=1))
    assert result.candidates[0].image_path.endswith("red_triangle.png")
    again = MultimodalIndex(None, host="127.0.0.1", port=chroma_server, image_embedder=clip_embedder, collection="served")
    assert again.ingest_folder(sample_folder).unchanged == 15


def test_unreachable_server_is_a_store_error(clip_embedder):
    port = free_port()
    with pytest.raises(StoreError, match=f"127.0.0.1:{port}"):
        client = make_client(None, host="127.0.0.1", port=port)
        client.heartbeat()
