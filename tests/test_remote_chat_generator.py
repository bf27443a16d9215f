"""OpenAIChatGenerator against a fake httpx transport: messages, answers, streams, retries, errors."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json

import httpx
import pytest
from PIL import Image

from mm_rag_components import config
from mm_rag_components.answer import MultimodalAnswerer
from mm_rag_components.errors import ConfigError
from mm_rag_components.remote.chat_generator import OpenAIChatGenerator
from mm_rag_components.remote.http import RemoteError
from mm_rag_components.generation.base import ChatTurn, ListwiseGenerator
from mm_rag_components.remote.transport import TransportSettings
from mm_rag_components.types import Candidate, Query

URL = "http://fake.test/v1"
TRANSPORT_FIELDS = {f.name for f in dataclasses.fields(TransportSettings)}


def _sse(*pieces: str, done: bool = True) -> bytes:
    events = [": keep-alive\n\n", "event: message\n"]
    events += [f"data: {json.dumps({'choices': [{'index': 0, 'delta': {'content': p}}]})}\n\n" for p in pieces]
    events.append(f"data: {json.dumps({'choices': [], 'usage': {'total_tokens': 3}})}\n\n")
    if done:
        events.append("data: [DONE]\n\n")
    return "".join(events).encode()


def _answer(text: str) -> dict:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}


def _generator(handler, **options) -> tuple[OpenAIChatGenerator, list[httpx.Request]]:
    """A generator whose every request (sync, async, streamed) goes to ``handler``."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    settings = {key: options.pop(key) for key in list(options) if key in TRANSPORT_FIELDS}
    generator = OpenAIChatGenerator("served-model", base_url=URL, transport=TransportSettings(backoff=0.0, **settings), **options)
    transport = httpx.MockTransport(record)
    generator.client._client = httpx.Client(transport=transport, headers=generator.client.headers)
    generator.client.async_client = lambda: httpx.AsyncClient(transport=transport, headers=generator.client.headers)  # type: ignore[method-assign]
    return generator, seen


TURNS = [ChatTurn("system", ("Answer briefly.",)), ChatTurn("user", ("What is in", Image.new("RGB", (8, 8), "red"), "this picture?"))]


def test_messages_payload_and_answer(monkeypatch):
    monkeypatch.setenv("MMRAG_API_KEY", "sk-from-env")
    generator, seen = _generator(lambda r: httpx.Response(200, json=_answer("A red square [1].")), max_tokens=7)
    assert isinstance(generator, ListwiseGenerator) and generator.accepts_images
    assert generator.generate(TURNS) == "A red square [1]."
    body = json.loads(seen[0].content)
    assert seen[0].url.path == "/v1/chat/completions" and seen[0].headers["authorization"] == "Bearer sk-from-env"
    assert body["model"] == "served-model" and body["max_tokens"] == 7 and body["temperature"] == 0.0 and "stream" not in body
    assert body["messages"][0] == {"role": "system", "content": "Answer briefly."}
    parts = body["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "text"]
    url = parts[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).getpixel((0, 0)) == (255, 0, 0)
    assert "sk-from-env" not in json.dumps(config.to_dict(generator))


def test_async_answer_is_native():
    generator, seen = _generator(lambda r: httpx.Response(200, json=_answer("async answer")))
    assert asyncio.run(generator.agenerate(TURNS)) == "async answer" and len(seen) == 1


def test_stream_reads_server_sent_events():
    generator, seen = _generator(lambda r: httpx.Response(200, content=_sse("The ", "red ", "one."), headers={"Content-Type": "text/event-stream"}))
    assert list(generator.stream(TURNS)) == ["The ", "red ", "one."]
    assert json.loads(seen[0].content)["stream"] is True


def test_a_server_that_ignores_stream_is_read_whole():
    generator, _ = _generator(lambda r: httpx.Response(200, json=_answer("all at once")))
    assert list(generator.stream(TURNS)) == ["all at once"]


def test_stream_retries_until_the_first_byte_then_fails_plainly():
    replies = iter([httpx.Response(503, text="busy"), httpx.Response(429, text="slow down", headers={"Retry-After": "0"}),
                    httpx.Response(200, content=_sse("ok"), headers={"Content-Type": "text/event-stream"})])
    generator, seen = _generator(lambda r: next(replies), retries=2)
    assert list(generator.stream(TURNS)) == ["ok"] and len(seen) == 3

    generator, seen = _generator(lambda r: httpx.Response(500, text="broken"), retries=1)
    with pytest.raises(RemoteError, match="HTTP 500 from /chat/completions: broken after 1 retry"):
        list(generator.stream(TURNS))
    assert len(seen) == 2

    generator, seen = _generator(lambda r: httpx.Response(400, text="bad model"), retries=3)
    with pytest.raises(RemoteError, match="HTTP 400") as caught:
        list(generator.stream(TURNS))
    assert caught.value.status == 400 and len(seen) == 1  # a client error is not retried


def test_connection_failures_are_retried_then_one_plain_error():
    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    generator, seen = _generator(refuse, retries=2)
    with pytest.raises(RemoteError, match="cannot reach http://fake.test/v1/chat/completions: ConnectError.*after 2 retries"):
        list(generator.stream(TURNS))
    assert len(seen) == 3


def test_stream_errors_and_malformed_events():
    generator, _ = _generator(lambda r: httpx.Response(200, content=b'data: {"error": {"message": "overloaded"}}\n\n',
                                                      headers={"Content-Type": "text/event-stream"}))
    with pytest.raises(RemoteError, match="overloaded"):
        list(generator.stream(TURNS))
    generator, _ = _generator(lambda r: httpx.Response(200, content=b"data: {not json\n\n", headers={"Content-Type": "text/event-stream"}))
    with pytest.raises(RemoteError, match="malformed stream event"):
        list(generator.stream(TURNS))
    generator, _ = _generator(lambda r: httpx.Response(200, json={"choices": []}))
    with pytest.raises(RemoteError, match="no choices"):
        generator.generate(TURNS)


def test_answerer_streams_through_it_and_flags_a_failed_stream():
    source = Candidate(id="a", modality="text", text="A red square.", score=0.9)
    generator, _ = _generator(lambda r: httpx.Response(200, content=_sse("It is red ", "[1]."), headers={"Content-Type": "text/event-stream"}))
    stream = MultimodalAnswerer(generator).stream(Query(text="what colour?"), [source])
    assert list(stream) == ["It is red ", "[1]."] and stream.answer.cited == [1] and stream.answer.flag is None

    generator, _ = _generator(lambda r: httpx.Response(401, text="no key"), retries=0)
    stream = MultimodalAnswerer(generator).stream(Query(text="what colour?"), [source])
    assert list(stream) == [] and stream.answer.flag == "generator_error" and "HTTP 401" in stream.answer.error


@pytest.mark.parametrize("options, says", [
    ({"base_url": "ftp://host/v1"}, "base_url must start with http"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"temperature": 3}, "temperature"),
    ({"image_format": "BMP"}, "image_format"),
    ({"extra_body": "x"}, "extra_body"),
])
def test_bad_options_are_config_errors(options, says):
    with pytest.raises(ConfigError, match=says):
        OpenAIChatGenerator("m", **{"base_url": URL, **options})


def test_no_server_without_a_url(monkeypatch):
    for name in ("MMRAG_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="no server"):
        OpenAIChatGenerator("m")
