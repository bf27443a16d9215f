"""RerankEndpointScorer against scripted servers: Cohere/vLLM, SGLang and TEI answer shapes,
mapping by index, score → log-odds, images as content parts, and failures."""

from __future__ import annotations

import asyncio
import io
import math

import pytest
from PIL import Image

from mm_rag_components import config
from mm_rag_components.errors import ConfigError
from mm_rag_components.remote.answers import MISSING_SCORE, REQUEST_FAILED
from mm_rag_components.remote.chat_scorer import UNSUPPORTED_MODALITY
from mm_rag_components.remote.rerank_endpoint import INVALID_SCORE, RerankEndpointScorer
from mm_rag_components.remote.transport import TransportSettings
from mm_rag_components.rerank.pointwise import PointwiseRanker
from mm_rag_components.types import Candidate, Query
from remote_support import FakeServer, Reply

QUERY = Query("a red circle")
DOCS = ["red circle", "blue square", "green triangle"]
P = {"red circle": 0.9, "blue square": 0.2, "green triangle": 0.5}


def texts(*docs: str) -> list[Candidate]:
    return [Candidate(id=str(i), modality="text", text=d) for i, d in enumerate(docs)]


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (0, 0, 255)).save(buffer, format="PNG")
    return buffer.getvalue()


def cohere(path, body, headers):
    results = [{"index": i, "relevance_score": P[d]} for i, d in enumerate(body["documents"])]
    return Reply(body={"id": "x", "results": sorted(results, key=lambda r: -r["relevance_score"])})


def test_cohere_shape_maps_by_index_and_takes_logits():
    with FakeServer(cohere) as server:
        s = RerankEndpointScorer("bge-reranker", base_url=server.url, transport=TransportSettings(retries=0))
        points = s.score(QUERY, texts(*DOCS))
        ranked = PointwiseRanker(s).rerank(QUERY, texts(*DOCS))
    body = server.requests[0].body
    assert server.requests[0].path == "/v1/rerank"
    assert body == {"model": "bge-reranker", "query": "a red circle", "documents": DOCS, "top_n": 3}
    assert [p.logodds for p in points] == pytest.approx([logit(P[d]) for d in DOCS])
    assert [p.probability for p in points] == pytest.approx([P[d] for d in DOCS])
    assert [c.text for c in ranked.candidates] == ["red circle", "green triangle", "blue square"]
    rebuilt = config.from_dict(config.to_dict(s))
    assert isinstance(rebuilt, RerankEndpointScorer) and rebuilt.path == "/v1/rerank"


def test_sglang_bare_list_and_tei_sorted_answers():
    def sglang(path, body, headers):
        return Reply(body=[{"index": i, "score": P[d], "document": d} for i, d in reversed(list(enumerate(body["documents"])))])

    def tei(path, body, headers):
        ranked = sorted(({"index": i, "score": P[t]} for i, t in enumerate(body["texts"])), key=lambda r: -r["score"])
        return Reply(body=ranked)

    with FakeServer(sglang) as server:
        points = RerankEndpointScorer("m", base_url=server.url).score(QUERY, texts(*DOCS))
    assert [p.probability for p in points] == pytest.approx([P[d] for d in DOCS])
    with FakeServer(tei) as server:
        points = asyncio.run(RerankEndpointScorer(base_url=server.url, api="tei").ascore(QUERY, texts(*DOCS)))
    assert server.requests[0].path == "/rerank" and server.requests[0].body == {"query": "a red circle", "texts": DOCS}
    assert [p.probability for p in points] == pytest.approx([P[d] for d in DOCS])


def test_images_as_content_parts_or_flagged_when_unsupported():
    seen = []

    def respond(path, body, headers):
        seen.append(body)
        return Reply(body={"results": [{"index": i, "relevance_score": 0.7} for i in range(len(body["documents"]))]})

    cands = [Candidate(id="i", modality="image", text="caption", image=png()), *texts("plain")]
    with FakeServer(respond) as server:
        points = RerankEndpointScorer("jina-reranker-m0", base_url=server.url, images=True).score(Query(text="q", image=png()), cands)
        assert [p.flag for p in points] == [None, None]
        documents = seen[0]["documents"]
        assert documents[1] == "plain"
        kinds = [part["type"] for part in documents[0]["content"]]
        assert kinds == ["image_url", "text"] and documents[0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
        assert seen[0]["query"]["content"][0]["type"] == "image_url"
        text_only = RerankEndpointScorer("bge", base_url=server.url).score(QUERY, cands)
        assert [p.flag for p in text_only] == [UNSUPPORTED_MODALITY, None] and text_only[0].logodds == -math.inf
        assert seen[-1]["documents"] == ["plain"]
        with pytest.raises(ConfigError, match="images=True"):
            RerankEndpointScorer("bge", base_url=server.url).score(Query(image=png()), cands)
    with pytest.raises(ConfigError, match="TEI"):
        RerankEndpointScorer(base_url="http://127.0.0.1:1", api="tei", images=True)
    with pytest.raises(ConfigError, match="model"):
        RerankEndpointScorer(base_url="http://127.0.0.1:1")


def test_score_kinds_missing_results_and_failed_batches():
    def respond(path, body, headers):
        docs = body["documents"]
        if "down" in docs:
            return Reply(500, {"error": "x"})
        return Reply(body={"results": [{"index": i, "relevance_score": 3.5 if d == "odd" else 0.4} for i, d in enumerate(docs) if d != "skip"]})

    with FakeServer(respond) as server:
        s = RerankEndpointScorer("m", base_url=server.url, batch_size=2, transport=TransportSettings(retries=1, backoff=0.01))
        points = s.score(QUERY, texts("ok", "odd", "skip", "fine", "down", "lost"))
        raw = RerankEndpointScorer("m", base_url=server.url, score_kind="logit").score(QUERY, texts("odd"))
    assert [p.flag for p in points] == [None, INVALID_SCORE, MISSING_SCORE, None, REQUEST_FAILED, REQUEST_FAILED]
    assert "HTTP 500" in points[4].detail
    assert raw[0].logodds == 3.5 and raw[0].flag is None
    assert [len(b["documents"]) for b in server.bodies()][:3] == [2, 2, 2]
