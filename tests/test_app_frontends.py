"""The terminal chat and the web chat's API (in-process HTTP client)."""

from __future__ import annotations

import base64
import io
import json

import pytest
from fake_models import ColourShapeEmbedder
from PIL import Image

from mm_rag_components import MultimodalIndex
from mm_rag_components.answer import MultimodalAnswerer
from mm_rag_components.app.pipeline import Conversation, QAPipeline
from mm_rag_components.app.terminal import run_chat
from mm_rag_components.app.web import create_app
from mm_rag_components.filters import FilterPolicy
from mm_rag_components.rerank import PointwiseRanker
from mm_rag_components.scoring.base import PointScore


class ColourScorer:
    """+4 log-odds when the candidate's file name contains a colour word of the query."""

    name = "colour"

    def score(self, query, candidates):
        words = set((query.text or "red").lower().split())
        return [PointScore.from_logodds(4.0 if words & set(c.metadata.get("file_name", "").replace("_", " ").replace(".", " ").split()) else -4.0)
                for c in candidates]


class Streamer:
    """Streams a fixed answer in pieces and records what it was shown."""

    def __init__(self) -> None:
        self.images_seen: list[int] = []

    def generate(self, turns):
        return "".join(self.stream(turns))

    def stream(self, turns):
        self.images_seen.append(len(turns[-1].images))
        yield from ["The red one ", "is [1]."]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from mm_rag_components.testing import write_sample_folder

    return write_sample_folder(tmp_path_factory.mktemp("front") / "data")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, folder) -> QAPipeline:
    index = MultimodalIndex(tmp_path_factory.mktemp("front-db") / "db", image_embedder=ColourShapeEmbedder())
    index.ingest_folder(folder)
    return QAPipeline(
        index, image_top_k=4, text_top_k=1,
        reranker=PointwiseRanker(ColourScorer()),
        relevance_filter=FilterPolicy(score_key="rerank_score", threshold=0.5, min_keep=1),
        answerer=MultimodalAnswerer(Streamer()),
    )


def test_terminal_chat_streams_answers_lists_sources_and_takes_images(pipeline, folder) -> None:
    stdin = io.StringIO(f"red circle\n/image {folder / 'blue_square.png'}\nwhat colour?\n/image nowhere.png\n/bogus\n/reset\n/quit\nnever read\n")
    stdout = io.StringIO()
    assert run_chat(Conversation(pipeline), stdin, stdout) == 2
    out = stdout.getvalue()
    assert "assistant> The red one is [1]." in out
    assert "*[1] image" in out and "rerank 0.982" in out  # the cited source, starred, with its scores
    assert "filtered out: below_threshold=" in out
    assert "(image attached:" in out and "error: /image nowhere.png: no such file; nothing attached" in out
    assert "unknown command '/bogus'" in out and "(new conversation)" in out
    assert pipeline.answerer.generator.images_seen[-1] >= 2  # source image(s) + the attached question image


@pytest.fixture(scope="module")
def client(pipeline):
    from starlette.testclient import TestClient

    return TestClient(create_app(pipeline, max_upload_bytes=200_000, note="tiny test models"), base_url="http://localhost")


def events(response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_page_is_self_contained(client) -> None:
    page = client.get("/").text
    assert "<form id=\"ask\"" in page and page.count("tiny test models") == 1
    assert "http://" not in page and "https://" not in page  # no CDN, nothing fetched from outside
    for parser in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "DOMParser"):
        assert parser not in page  # the answer is built from DOM nodes and textContent only


def test_ask_streams_turn_tokens_and_done_and_keeps_the_session(client) -> None:
    response = client.post("/api/ask", json={"question": "red circle"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/x-ndjson")
    stream = events(response)
    assert [e["event"] for e in stream] == ["turn", "token", "token", "done"]
    done = stream[-1]["turn"]
    assert done["answer"]["text"] == "The red one is [1]." and done["answer"]["cited"] == [1]
    assert done["kept"][0]["metadata"]["file_name"].startswith("red") and done["dropped"]
    session = stream[0]["session"]
    second = events(client.post("/api/ask", json={"question": "and blue?", "session": session}))
    assert second[0]["session"] == session
    image = events(client.post("/api/ask", json={"image": data_uri(Image.new("RGB", (30, 30), (220, 30, 30))), "session": session}))
    assert image[-1]["event"] == "done"
    record, shown = done["kept"][0]["id"], done["kept"][0]["media"]
    assert shown.startswith("/media/") and all(s["media"] is None for s in done["kept"] + done["dropped"] if s["modality"] == "text")
    for url in (shown, f"/media/{record}"):  # the image the chat showed, and the record's image by its id
        picture = client.get(url)
        assert picture.status_code == 200 and picture.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert picture.headers["content-type"] == "image/png" and picture.headers["x-content-type-options"] == "nosniff"
    assert client.post("/api/reset", json={"session": session}).json() == {"session": session}
    assert events(client.post("/api/ask", json={"question": "red", "session": session}))[0]["exchange"] == 1  # forgotten


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"question": 42}, 400, "question must be text"),
        ({"image": "not a data uri"}, 400, "data: URI"),
        ({"image": "data:image/png;base64,!!!!"}, 400, "not valid base64"),
        ({"image": "data:image/png;base64," + base64.b64encode(b"not an image").decode()}, 400, "not a recognised image"),
        ({"image": "data:image/png;base64," + "A" * 300_000}, 413, "larger than"),
        ({}, 400, "needs text, an image"),
    ],
)
def test_bad_requests_are_refused_with_one_message(client, body, status, message) -> None:
    response = client.post("/api/ask", json=body)
    assert response.status_code == status and message in response.json()["error"]


def test_bad_bodies_and_unknown_media(client) -> None:
    json_body = {"content-type": "application/json"}
    assert client.post("/api/ask", content=b"{not json", headers=json_body).status_code == 400
    too_big = client.post("/api/ask", content=b"x" * 400_000, headers=json_body)
    assert too_big.status_code == 413 and too_big.json()["kind"] == "too_large"
    assert client.get("/media/no-such-record").status_code == 404
    assert client.get("/media/..%2F..%2Fetc%2Fpasswd").status_code == 404
