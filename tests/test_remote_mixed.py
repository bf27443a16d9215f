"""Remote scorers and mixed (page) candidates: the page image and its text travel in one message,
the text cut to the page budget; a text-only server gets the text alone, flagged."""

from __future__ import annotations

import io
import math

import pytest
from PIL import Image

from mm_rag_components import config
from mm_rag_components.remote.chat_scorer import OpenAIChatScorer
from mm_rag_components.remote.rerank_endpoint import RerankEndpointScorer
from mm_rag_components.scoring.base import IMAGE_NOT_SHOWN, MISSING_IMAGE, TRUNCATED
from mm_rag_components.types import MIXED, Candidate, Query
from remote_support import TEST_TEMPLATE, FakeServer, Reply, chat_reply, completion_reply

QUERY = Query("quarterly revenue")
GOOD = {"yes": -0.5, "no": -1.5}
PAGE_TEXT = " ".join(f"Sentence {i} of the annual report." for i in range(60))  # ~2,100 characters


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 128, 255)).save(buffer, format="PNG")
    return buffer.getvalue()


def page(text: str = PAGE_TEXT, image: bytes | None = None, **kw) -> Candidate:
    return Candidate(id="p", modality=MIXED, text=text, image=png() if image is None else image, metadata={"page": 3}, **kw)


def chat(url: str, **options) -> OpenAIChatScorer:
    return OpenAIChatScorer("served", base_url=url + "/v1", template=TEST_TEMPLATE, retries=0, timeout=5.0, **options)


def test_chat_sends_the_page_image_then_its_text_in_one_message():
    with FakeServer(lambda path, body, headers: Reply(body=chat_reply(GOOD))) as server:
        points = chat(server.url, page_text_tokens=100).score(QUERY, [page(), page(text="A short page.")])
    assert [p.flag for p in points] == [TRUNCATED, None] and all(math.isfinite(p.logodds) for p in points)
    bodies = sorted((r.body for r in server.requests), key=lambda b: len(str(b)))
    short, long = (b["messages"][-1]["content"] for b in bodies)
    for content in (short, long):
        kinds = [part["type"] for part in content]
        assert kinds.count("image_url") == 1 and kinds.index("image_url") < max(i for i, k in enumerate(kinds) if k == "text")
    assert short[-1]["text"] == "A short page."
    sent = long[-1]["text"]
    assert PAGE_TEXT.startswith(sent) and len(sent) <= 400 and len(sent) > 300  # 100 tokens ≈ 400 characters


def test_a_text_only_server_gets_the_page_text_flagged_image_not_shown():
    with FakeServer(lambda path, body, headers: Reply(body=chat_reply(GOOD))) as server:
        points = chat(server.url, accepts_images=False, page_text_tokens=100).score(QUERY, [page(text="A short page."), page()])
    assert [p.flag for p in points] == [IMAGE_NOT_SHOWN, f"{TRUNCATED},{IMAGE_NOT_SHOWN}"]
    assert all(math.isfinite(p.logodds) for p in points)
    assert all(isinstance(m["content"], str) for r in server.requests for m in r.body["messages"])  # no image anywhere
    assert any(m["content"].endswith("A short page.") for r in server.requests for m in r.body["messages"])


def test_a_page_without_its_image_is_sent_as_text_and_flagged():
    with FakeServer(lambda path, body, headers: Reply(body=chat_reply(GOOD))) as server:
        points = chat(server.url).score(QUERY, [Candidate(id="p", modality=MIXED, text="A page whose image is lost.")])
    assert points[0].flag == MISSING_IMAGE and math.isfinite(points[0].logodds)
    assert isinstance(server.requests[0].body["messages"][-1]["content"], str)


def test_raw_mode_cuts_the_page_text_in_the_tokenizers_tokens(tmp_path_factory):
    from transformers import AutoTokenizer

    from mm_rag_components.testing import build_tiny_causal_lm

    model_dir = build_tiny_causal_lm(tmp_path_factory.mktemp("causal") / "m")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with FakeServer(lambda path, body, headers: Reply(body=completion_reply({"yes": -1.0, "no": -2.0}))) as server:
        s = chat(server.url, mode="raw", tokenizer=str(model_dir), local_files_only=True, accepts_images=False, page_text_tokens=30)
        points = s.score(QUERY, [page()])
    assert points[0].flag == f"{TRUNCATED},{IMAGE_NOT_SHOWN}"
    prompt = server.requests[0].body["prompt"]
    document = prompt.split("Document: ")[-1]
    cut = next(PAGE_TEXT[:n] for n in range(len(PAGE_TEXT), 0, -1) if PAGE_TEXT[:n] in document)
    assert len(tokenizer(cut, add_special_tokens=False)["input_ids"]) == 30


def test_rerank_endpoint_sends_image_and_text_or_the_text_alone():
    seen = []

    def respond(path, body, headers):
        seen.append(body)
        return Reply(body={"results": [{"index": i, "relevance_score": 0.8} for i in range(len(body["documents"]))]})

    with FakeServer(respond) as server:
        multimodal = RerankEndpointScorer("qwen3-vl-reranker", base_url=server.url, images=True, page_text_tokens=50)
        points = multimodal.score(QUERY, [page(), page(text="A short page.")])
        assert [p.flag for p in points] == [TRUNCATED, None]
        long, short = seen[0]["documents"]
        assert [part["type"] for part in long["content"]] == ["image_url", "text"]
        assert PAGE_TEXT.startswith(long["content"][1]["text"]) and len(long["content"][1]["text"]) <= 200
        assert short["content"][1] == {"type": "text", "text": "A short page."}
        text_only = RerankEndpointScorer("bge", base_url=server.url).score(QUERY, [page(text="A short page.")])
        assert text_only[0].flag == IMAGE_NOT_SHOWN and text_only[0].probability == pytest.approx(0.8)
        assert seen[-1]["documents"] == ["A short page."]
    rebuilt = config.from_dict(config.to_dict(multimodal))
    assert rebuilt.page_text_tokens == 50 and rebuilt.cache_identity() == multimodal.cache_identity()
