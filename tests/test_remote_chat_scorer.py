"""OpenAIChatScorer against scripted local servers: request shape, log-odds, flags, failure paths
(429 + Retry-After, 500, malformed JSON, missing logprobs, timeouts, connection refused), the
top-k cap, and the async in-flight bound."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import math
import threading
import time

import pytest
from PIL import Image

from mm_rag_components import config
from mm_rag_components.errors import ConfigError, MediaError
from mm_rag_components.remote.answers import (
    MISSING_LOGPROBS,
    NO_ANSWER_LOGPROBS,
    PARTIAL_ANSWER_LOGPROBS,
    REQUEST_FAILED,
    answer_score,
    logprobs_cap,
)
from mm_rag_components.remote.chat_scorer import UNSUPPORTED_MODALITY, OpenAIChatScorer
from mm_rag_components.remote.http import retry_after_seconds
from mm_rag_components.remote.transport import TransportSettings
from mm_rag_components.rerank.pointwise import PointwiseRanker
from mm_rag_components.scoring.base import UNREADABLE_IMAGE
from mm_rag_components.types import RERANK_FLAG, Candidate, Query
from remote_support import TEST_TEMPLATE, FakeServer, Reply, chat_reply, completion_reply, document_of, free_port

QUERY = Query("a red circle")
TRANSPORT_FIELDS = {f.name for f in dataclasses.fields(TransportSettings)}
GOOD = {"yes": -0.5, "no": -1.5, "Yes": -2.0, "maybe": -3.0}


def texts(*docs: str) -> list[Candidate]:
    return [Candidate(id=str(i), modality="text", text=d) for i, d in enumerate(docs)]


def scorer(url: str, **options) -> OpenAIChatScorer:
    """A scorer for ``url``; transport fields among ``options`` go into its TransportSettings (a
    request timeout far above a local round trip: only the timeout test, with its own value, hits one)."""
    settings = {"retries": 2, "backoff": 0.01, "max_backoff": 2.0, "timeout": 60.0}
    settings.update({key: options.pop(key) for key in list(options) if key in TRANSPORT_FIELDS})
    options = {"template": TEST_TEMPLATE, **options}
    return OpenAIChatScorer("served-model", base_url=url + "/v1", transport=TransportSettings(**settings), **options)


def png_bytes(colour=(255, 0, 0)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    return buffer.getvalue()


# ----------------------------------------------------------------------------------- the math


def test_logodds_sums_surface_variants_and_bounds_partial_answers():
    point = answer_score([("yes", -0.5), (" Yes", -2.0), ("no", -1.5), ("x", -4.0)], ["yes"], ["no"], exact=False)
    expected = math.log(math.exp(-0.5) + math.exp(-2.0)) - (-1.5)
    assert point.logodds == pytest.approx(expected) and point.flag is None
    exact = answer_score([(" yes", -0.5), ("Yes", -2.0), (" no", -1.5)], [" yes"], [" no"], exact=True)
    assert exact.logodds == pytest.approx(1.0)
    # the sampled token listed twice counts once
    assert answer_score([("yes", -1.0), ("yes", -1.0), ("no", -1.0)], ["yes"], ["no"], exact=False).logodds == pytest.approx(0.0)
    lower = answer_score([("yes", -1.0), ("a", -3.0), ("b", -6.0)], ["yes"], ["no"], exact=False)
    assert lower.flag == PARTIAL_ANSWER_LOGPROBS and lower.logodds == pytest.approx(5.0) and "lower bound" in lower.detail
    upper = answer_score([("no", -1.0), ("a", -3.0), ("b", -6.0)], ["yes"], ["no"], exact=False)
    assert upper.flag == PARTIAL_ANSWER_LOGPROBS and upper.logodds == pytest.approx(-5.0) and "upper bound" in upper.detail
    neither = answer_score([("a", -0.1), ("b", -3.0)], ["yes"], ["no"], exact=False)
    assert neither.flag == NO_ANSWER_LOGPROBS and neither.logodds == -math.inf and neither.probability == 0.0


def test_cap_and_retry_after_parsing():
    assert logprobs_cap("Requested sample logprobs of 50, which is greater than max allowed: 20", 50) == 20
    assert logprobs_cap("Invalid 'top_logprobs': integer above maximum value. Expected a value <= 20, but got 50 instead.", 50) == 20
    assert logprobs_cap("model not found", 50) is None
    assert logprobs_cap("top_logprobs must be at most 100", 50) is None  # not below what we asked
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412475.0) == pytest.approx(5.0)
    assert retry_after_seconds("soon") is None


# ----------------------------------------------------------------------------- request shape


def test_chat_request_shape_images_env_key_and_config(monkeypatch, tmp_path):
    monkeypatch.setenv("MMRAG_API_KEY", "sk-secret")
    image = tmp_path / "red.png"
    image.write_bytes(png_bytes())
    with FakeServer(lambda path, body, headers: Reply(body=chat_reply(GOOD))) as server:
        s = scorer(server.url, top_logprobs=7, extra_body={"chat_template_kwargs": {"enable_thinking": False}})
        cands = [*texts("red things"), Candidate(id="img", modality="image", text="a photo", image_path=str(image))]
        points = s.score(QUERY, cands)
    assert [p.flag for p in points] == [None, None]
    assert points[0].logodds == pytest.approx(math.log(math.exp(-0.5) + math.exp(-2.0)) + 1.5)
    assert all(r.path == "/v1/chat/completions" for r in server.requests)
    assert server.requests[0].headers["authorization"] == "Bearer sk-secret"
    body = server.requests[0].body if "red things" in str(server.requests[0].body) else server.requests[1].body
    assert body["model"] == "served-model" and body["max_tokens"] == 1 and body["logprobs"] is True and body["top_logprobs"] == 7
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    system, user = body["messages"]
    assert system == {"role": "system", "content": TEST_TEMPLATE.system}
    assert user == {"role": "user", "content": "Query: a red circle\nDocument: red things"}
    image_body = next(r.body for r in server.requests if "a photo" in str(r.body))
    parts = image_body["messages"][1]["content"]
    url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
    assert url.startswith("data:image/png;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).getpixel((0, 0)) == (255, 0, 0)
    saved = config.to_dict(s)
    assert "api_key" not in saved and "sk-secret" not in str(saved)
    rebuilt = config.from_dict(saved)
    assert isinstance(rebuilt, OpenAIChatScorer) and rebuilt.top_logprobs == 7 and rebuilt.base_url == s.base_url


def test_url_images_only_when_allowed_and_env_base_url(monkeypatch):
    with FakeServer(lambda path, body, headers: Reply(body=chat_reply(GOOD))) as server:
        monkeypatch.setenv("MMRAG_BASE_URL", server.url + "/v1")
        cand = [Candidate(id="u", modality="image", image_path="https://example.com/cat.png")]
        refused = OpenAIChatScorer("m").score(QUERY, cand)
        assert refused[0].flag == UNREADABLE_IMAGE and not server.requests
        allowed = OpenAIChatScorer("m", allow_urls=True).score(QUERY, cand)
        assert allowed[0].flag is None
        parts = server.requests[0].body["messages"][1]["content"]
        assert {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}} in parts
        with pytest.raises(MediaError, match="query image"):
            OpenAIChatScorer("m").score(Query(text="q", image="https://example.com/q.png"), texts("d"))
    monkeypatch.delenv("MMRAG_BASE_URL")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="MMRAG_BASE_URL"):
        OpenAIChatScorer("m")
    with pytest.raises(ConfigError):
        OpenAIChatScorer("m", base_url="http://x/v1", mode="raw")  # raw needs a tokenizer
    with pytest.raises(ConfigError):
        OpenAIChatScorer("m", base_url="http://x/v1", answers="exact")  # exact needs raw


def test_raw_mode_sends_the_local_prompt_text(tmp_path_factory):
    from mm_rag_components.scoring.transformers_scorer import TransformersScorer
    from mm_rag_components.testing import build_tiny_causal_lm

    model_dir = build_tiny_causal_lm(tmp_path_factory.mktemp("causal") / "m")
    local = TransformersScorer(model_dir, template=TEST_TEMPLATE, local_files_only=True)  # loads the tokenizer only
    with FakeServer(lambda path, body, headers: Reply(body=completion_reply({"yes": -1.0, "no": -2.0, " yes": -0.5, " no": -3.0}))) as server:
        s = scorer(server.url, mode="raw", tokenizer=str(model_dir), top_logprobs=50, local_files_only=True)
        cands = [*texts("a red circle <|im_start|>system"), Candidate(id="i", modality="image", image=png_bytes())]
        points = s.score(QUERY, cands)
    assert [r.path for r in server.requests] == ["/v1/completions"]
    body = server.requests[0].body
    assert body["prompt"] == local.render(QUERY, "a red circle <|im_start|>system", False)[0]
    assert body["logprobs"] == 50 and body["max_tokens"] == 1 and "messages" not in body
    yes, no = (local.tokenizer.decode([i]) for i in (local.yes_id, local.no_id))
    top = {"yes": -1.0, "no": -2.0, " yes": -0.5, " no": -3.0}
    assert points[0].logodds == pytest.approx(top[yes] - top[no])  # exactly the local answer tokens
    assert points[1].flag == UNSUPPORTED_MODALITY and points[1].logodds == -math.inf


def test_raw_mode_reads_completions_answered_in_the_chat_layout():
    from mm_rag_components.remote.answers import completion_top_logprobs

    # llama.cpp's llama-server answers /completions with logprobs.content, like a chat answer
    chat_layout = chat_reply({" yes": -0.7, " no": -2.2})
    assert completion_top_logprobs(chat_layout) == [(" yes", -0.7), (" yes", -0.7), (" no", -2.2)]
    legacy = completion_reply({" yes": -0.7, " no": -2.2})
    assert sorted(completion_top_logprobs(legacy)) == sorted([(" yes", -0.7), (" no", -2.2), (" yes", -0.7)])
    assert completion_top_logprobs({"choices": [{"logprobs": {}}]}) is None


def test_a_text_only_server_gets_no_images():
    from mm_rag_components.scoring.base import IMAGE_NOT_SHOWN

    with FakeServer(lambda path, body, headers: Reply(body=chat_reply(GOOD))) as server:
        s = scorer(server.url, accepts_images=False)
        captioned = Candidate(id="c", modality="image", image=png_bytes(), text="a red circle")
        bare = Candidate(id="b", modality="image", image=png_bytes())
        points = s.score(Query("a red circle", image=png_bytes()), [captioned, bare, *texts("plain text")])
        only_image = s.score(Query(image=png_bytes()), texts("plain text"))
    sent = [m for r in server.requests for m in r.body["messages"]]
    assert all(isinstance(m["content"], str) for m in sent)  # no image part anywhere
    assert len(server.requests) == 2  # the captioned image (as its text) and the text; the bare image is not sent
    assert points[0].flag == IMAGE_NOT_SHOWN and math.isfinite(points[0].logodds)
    assert points[1].flag == UNSUPPORTED_MODALITY and points[1].logodds == -math.inf
    assert points[2].flag == IMAGE_NOT_SHOWN  # the query's image was left out
    assert only_image[0].flag == UNSUPPORTED_MODALITY and s.config()["accepts_images"] is False


# ----------------------------------------------------------------------------- failure paths


def test_429_with_retry_after_is_honoured(monkeypatch):
    calls = {"n": 0}

    def respond(path, body, headers):
        calls["n"] += 1
        if calls["n"] == 1:
            return Reply(429, {"error": "slow down"}, {"Retry-After": "0.4"})
        return Reply(body=chat_reply(GOOD))

    waits: list[float] = []
    real_sleep = time.sleep
    monkeypatch.setattr(time, "sleep", lambda seconds: (waits.append(seconds), real_sleep(seconds))[1])
    with FakeServer(respond) as server:
        points = scorer(server.url).score(QUERY, texts("d"))
    monkeypatch.undo()
    # the server's wait, not the client's own backoff (0.01 s here)
    assert points[0].flag is None and len(server.requests) == 2 and waits == [0.4]
    with FakeServer(lambda *a: Reply(429, {"error": "later"}, {"Retry-After": "120"})) as server:
        point = scorer(server.url).score(QUERY, texts("d"))[0]
    assert point.flag == REQUEST_FAILED and "retry after 120 s" in point.detail and len(server.requests) == 1


def test_500_then_success_and_a_persistent_500_fails_only_its_candidate():
    seen: dict[str, int] = {}

    def respond(path, body, headers):
        doc = document_of(body)
        seen[doc] = seen.get(doc, 0) + 1
        if doc == "flaky" and seen[doc] == 1:
            return Reply(500, {"error": "oops"})
        if doc == "broken":
            return Reply(503, {"error": "down"})
        return Reply(body=chat_reply(GOOD))

    with FakeServer(respond) as server:
        points = scorer(server.url).score(QUERY, texts("fine", "flaky", "broken"))
        assert seen["flaky"] == 2 and seen["broken"] == 3  # retries=2
        ranked = PointwiseRanker(scorer(server.url)).rerank(QUERY, texts("broken", "fine"))
    assert [p.flag for p in points] == [None, None, REQUEST_FAILED]
    assert "HTTP 503" in points[2].detail and "after 2 retries" in points[2].detail
    assert [c.text for c in ranked.candidates] == ["fine", "broken"]
    assert [c.metadata[RERANK_FLAG] for c in ranked.candidates] == [None, REQUEST_FAILED]


def test_malformed_json_and_missing_logprobs_are_flagged_not_retried():
    def respond(path, body, headers):
        doc = document_of(body)
        if doc == "garbled":
            return Reply(body=b"{not json")
        if doc == "plain":
            return Reply(body={"choices": [{"message": {"role": "assistant", "content": "yes"}}]})
        return Reply(body=chat_reply(GOOD))

    with FakeServer(respond) as server:
        points = scorer(server.url).score(QUERY, texts("garbled", "plain", "ok"))
    assert [p.flag for p in points] == [REQUEST_FAILED, MISSING_LOGPROBS, None]
    assert "malformed JSON" in points[0].detail
    assert len(server.requests) == 3


def test_slow_response_times_out_and_the_others_are_scored():
    """"slow" is never answered in time (its handler sleeps past the test); "fast" has 5 s, far more
    than a local round trip needs, so the outcome does not depend on the machine's load."""
    def respond(path, body, headers):
        return Reply(body=chat_reply(GOOD), delay=600.0 if document_of(body) == "slow" else 0.0)

    with FakeServer(respond) as server:
        points = scorer(server.url, timeout=5.0).score(QUERY, texts("slow", "fast"))
    assert points[0].flag == REQUEST_FAILED and "within 5 s (timeout)" in points[0].detail
    assert points[1].flag is None and points[1].logodds == pytest.approx(math.log(math.exp(-0.5) + math.exp(-2.0)) + 1.5)  # GOOD
    assert sorted(document_of(r.body) for r in server.requests) == ["fast", "slow"]  # a timeout is not retried


def test_connection_refused_flags_every_candidate_after_retries():
    s = scorer(f"http://127.0.0.1:{free_port()}", retries=1)
    points = s.score(QUERY, texts("a", "b"))
    assert {p.flag for p in points} == {REQUEST_FAILED}
    assert "cannot reach" in points[0].detail and "after 1 retry" in points[0].detail
    ranked = PointwiseRanker(s).rerank(QUERY, texts("a", "b"))
    assert [c.text for c in ranked.candidates] == ["a", "b"]  # unscored: retrieval order kept, flagged
    assert ranked.candidates[0].metadata[RERANK_FLAG] == REQUEST_FAILED
    assert "cannot reach" in ranked.details[0].detail


def test_top_k_cap_is_detected_once_and_remembered():
    def respond(path, body, headers):
        if body["top_logprobs"] > 5:
            return Reply(400, {"error": {"message": f"Requested sample logprobs of {body['top_logprobs']}, which is greater than max allowed: 5"}})
        return Reply(body=chat_reply(GOOD))

    with FakeServer(respond) as server:
        s = scorer(server.url, top_logprobs=50, max_concurrency=1)
        points = s.score(QUERY, texts("a", "b"))
    assert [p.flag for p in points] == [None, None]
    assert [b["top_logprobs"] for b in server.bodies()] == [50, 5, 5]
    assert s.effective_top_logprobs == 5
    with FakeServer(lambda *a: Reply(400, {"error": "logprobs are not supported"})) as server:
        point = scorer(server.url, top_logprobs=50).score(QUERY, texts("a"))[0]
    assert point.flag == REQUEST_FAILED and "HTTP 400" in point.detail and len(server.requests) == 1


def test_answers_outside_the_top_list_are_flagged_and_ranked_last():
    def respond(path, body, headers):
        top = {"the": -0.1, "a": -3.0} if document_of(body) == "lost" else GOOD
        return Reply(body=chat_reply(top))

    with FakeServer(respond) as server:
        ranked = PointwiseRanker(scorer(server.url)).rerank(QUERY, texts("lost", "found"))
    assert [c.text for c in ranked.candidates] == ["found", "lost"]
    assert ranked.candidates[1].metadata[RERANK_FLAG] == NO_ANSWER_LOGPROBS


# ------------------------------------------------------------------------------------- async


class Gathering:
    """A server's ``respond`` that holds every request until ``target`` of them are in flight at
    once (then answers all, each after a short pause), so overlap is seen whatever the machine's
    load; the 120 s wait is a hang guard for a client that never gets there."""

    def __init__(self, target: int) -> None:
        self.target, self.arrived, self.reached = target, 0, threading.Event()
        self.lock = threading.Lock()

    def __call__(self, path, body, headers) -> Reply:
        with self.lock:
            self.arrived += 1
            if self.arrived >= self.target:
                self.reached.set()
        self.reached.wait(120)
        return Reply(body=chat_reply(GOOD), delay=0.05)


def test_async_queries_run_concurrently_within_the_bound():
    async def many(s, n):
        return await asyncio.gather(*(s.ascore(Query(f"q{i}"), texts("a", "b", "c")) for i in range(n)))

    with FakeServer(Gathering(6)) as server:
        results = asyncio.run(many(scorer(server.url, max_concurrency=64), 6))
        assert all(p.flag is None for r in results for p in r)
        assert server.max_in_flight >= 6  # the six questions' requests overlapped
    with FakeServer(Gathering(3)) as server:
        asyncio.run(many(scorer(server.url, max_concurrency=3), 4))
        assert server.max_in_flight == 3 and len(server.requests) == 12
    with FakeServer(Gathering(2)) as server:
        scorer(server.url, max_concurrency=2).score(QUERY, texts("a", "b", "c", "d", "e"))
        assert server.max_in_flight == 2


def test_async_failures_match_sync():
    def respond(path, body, headers):
        return Reply(500, {"error": "x"}) if document_of(body) == "bad" else Reply(body=chat_reply(GOOD))

    with FakeServer(respond) as server:
        s = scorer(server.url)
        sync = s.score(QUERY, texts("bad", "good"))
        asynchronous = asyncio.run(s.ascore(QUERY, texts("bad", "good")))
        ranked = asyncio.run(PointwiseRanker(s).arerank(QUERY, texts("bad", "good")))
    assert [p.flag for p in sync] == [p.flag for p in asynchronous] == [REQUEST_FAILED, None]
    assert [c.text for c in ranked.candidates] == ["good", "bad"]
