"""Hostile servers against every remote call: a body or headers dripped a byte at a time, a body
or a stream that never ends, a huge declared length, keep-alive comments and no text.

Each call must end (a 30 s hang guard; no test asserts how long anything took) with a typed
error naming the limit it broke — or, for scorers, with that candidate flagged
``request_failed`` (the limit in its detail) while the honest ones are scored.
"""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from mm_rag_components.answer import MultimodalAnswerer
from mm_rag_components.errors import BackendError
from mm_rag_components.remote.answers import REQUEST_FAILED
from mm_rag_components.remote.chat_generator import OpenAIChatGenerator
from mm_rag_components.remote.chat_scorer import OpenAIChatScorer
from mm_rag_components.remote.http import DeadlineExceeded, JsonClient, LimitExceeded, RemoteError, ResponseTooLarge
from mm_rag_components.remote.rerank_endpoint import RerankEndpointScorer
from mm_rag_components.remote.transport import TransportSettings
from mm_rag_components.generation.base import ChatTurn
from mm_rag_components.types import Candidate, Query
from remote_support import TEST_TEMPLATE, FakeServer, Reply, chat_reply, document_of, finishes

QUERY = Query(text="a red circle")
TURNS = [ChatTurn("user", ("Say hi.",))]
#: Small limits: a deadline under a second, a per-read timeout far above it (so only the
#: deadline can end a dripping answer), 64 KiB per answer, 200 stream events.
SHORT = TransportSettings(timeout=10.0, deadline=0.8, retries=0, max_response_bytes=64 * 1024, max_stream_chunks=200)
#: The same with a long deadline, for the size caps (so a busy machine cannot make the deadline
#: come first).
ROOMY = SHORT.replace(deadline=30.0)
EVENT = b'data: {"choices": [{"index": 0, "delta": {"content": "x"}}]}\n\n'


def texts(*docs: str) -> list[Candidate]:
    return [Candidate(id=str(i), modality="text", text=d) for i, d in enumerate(docs)]


#: name → (the hostile reply made from an honest body, the settings, the limit it breaks)
HOSTILE = {
    "drip": (lambda body: Reply(body=body, drip=0.05), SHORT, "deadline"),
    "drip_headers": (lambda body: Reply(body=body, drip=0.05, drip_headers=True), SHORT, "deadline"),
    "endless": (lambda body: Reply(body=body[:1], forever=b" " * 4096), ROOMY, "max_response_bytes"),
    "slow_endless": (lambda body: Reply(body=body[:1], forever=b" ", every=0.01), SHORT, "deadline"),
    "huge_length": (lambda body: Reply(body=body, length=10**12), ROOMY, "max_response_bytes"),
}


def _score(scorer, kind: str) -> list:
    """Three candidates, the middle one a trap, scored sync or async under the hang guard."""
    candidates = texts("fine", "trap", "also fine")
    if kind == "sync":
        return finishes(lambda: scorer.score(QUERY, candidates))
    return finishes(lambda: asyncio.run(scorer.ascore(QUERY, candidates)))


def _says(detail: str, limit: str) -> bool:
    return f"{limit}=" in detail


@pytest.mark.parametrize("mode", sorted(HOSTILE))
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_chat_scorer_flags_only_the_hostile_answer(mode, kind):
    hostile, settings, limit = HOSTILE[mode]
    honest = json.dumps(chat_reply({"yes": -0.2, "no": -1.8})).encode()

    def respond(path, body, headers):
        return hostile(honest) if document_of(body) == "trap" else Reply(body=honest)

    with FakeServer(respond) as server:
        points = _score(OpenAIChatScorer("m", base_url=server.url + "/v1", template=TEST_TEMPLATE, transport=settings), kind)
    assert [p.flag for p in points] == [None, REQUEST_FAILED, None]
    assert _says(points[1].detail, limit), points[1].detail
    assert points[0].probability == pytest.approx(points[2].probability) and points[0].probability > 0.5


@pytest.mark.parametrize("mode", sorted(HOSTILE))
@pytest.mark.parametrize("api", ["cohere", "tei"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_rerank_endpoint_flags_only_the_hostile_batch(mode, api, kind):
    hostile, settings, limit = HOSTILE[mode]

    def respond(path, body, headers):
        docs = body["documents"] if api == "cohere" else body["texts"]
        honest = json.dumps([{"index": i, "score": 0.75} for i in range(len(docs))]).encode()
        return hostile(honest) if docs == ["trap"] else Reply(body=honest)

    with FakeServer(respond) as server:
        points = _score(RerankEndpointScorer("m", base_url=server.url, api=api, batch_size=1, transport=settings), kind)
    assert [p.flag for p in points] == [None, REQUEST_FAILED, None]
    assert _says(points[1].detail, limit), points[1].detail
    assert points[0].probability == pytest.approx(0.75)


@pytest.mark.parametrize("mode", sorted(HOSTILE))
@pytest.mark.parametrize("kind", ["generate", "agenerate", "post", "apost"])
def test_whole_answers_end_with_a_typed_error_naming_the_limit(mode, kind):
    hostile, settings, limit = HOSTILE[mode]
    answer = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]}).encode()
    with FakeServer(lambda path, body, headers: hostile(answer)) as server:
        generator = OpenAIChatGenerator("m", base_url=server.url + "/v1", transport=settings)
        client = JsonClient(server.url, transport=settings)

        async def apost():
            async with client.async_client() as http:
                return await client.apost(http, "/x", {})

        calls = {
            "generate": lambda: generator.generate(TURNS),
            "agenerate": lambda: asyncio.run(generator.agenerate(TURNS)),
            "post": lambda: client.post("/x", {}),
            "apost": lambda: asyncio.run(apost()),
        }
        with pytest.raises(LimitExceeded) as caught:
            finishes(calls[kind])
    assert caught.value.limit == limit and isinstance(caught.value, RemoteError) and isinstance(caught.value, BackendError)
    assert isinstance(caught.value, DeadlineExceeded if limit == "deadline" else ResponseTooLarge)
    assert f"{limit}=" in str(caught.value)


def _sse(*pieces: str) -> bytes:
    events = [f"data: {json.dumps({'choices': [{'index': 0, 'delta': {'content': p}}]})}\n\n" for p in pieces]
    return ("".join(events) + "data: [DONE]\n\n").encode()


#: name → (hostile streamed reply, settings, the limit it breaks)
STREAMS = {
    "endless_events": (Reply(content_type="text/event-stream", body=EVENT, forever=EVENT),
                       ROOMY.replace(max_response_bytes=16 * 1024 * 1024), "max_stream_chunks"),
    "slow_endless_events": (Reply(content_type="text/event-stream", body=EVENT, forever=EVENT, every=0.01),
                            SHORT.replace(max_stream_chunks=10**6), "deadline"),
    "keep_alive_only": (Reply(content_type="text/event-stream", body=b": keep-alive\n\n", forever=b": keep-alive\n\n", every=0.02),
                        ROOMY.replace(first_token_timeout=0.5), "first_token_timeout"),
    "one_endless_line": (Reply(content_type="text/event-stream", body=b"data: ", forever=b"x" * 4096), ROOMY, "max_response_bytes"),
    "drip": (Reply(content_type="text/event-stream", body=_sse("Hello ", "there."), drip=0.05), SHORT, "deadline"),
    "drip_headers": (Reply(content_type="text/event-stream", body=_sse("Hi."), drip=0.05, drip_headers=True), SHORT, "deadline"),
    "huge_length": (Reply(content_type="text/event-stream", body=_sse("Hi."), length=10**12), ROOMY, "max_response_bytes"),
}


async def _collect(pieces) -> list[str]:
    return [piece async for piece in pieces]


@pytest.mark.parametrize("mode", sorted(STREAMS))
@pytest.mark.parametrize("kind", ["stream", "astream"])
def test_streams_end_with_a_typed_error_naming_the_limit(mode, kind):
    reply, settings, limit = STREAMS[mode]
    with FakeServer(lambda path, body, headers: reply) as server:
        generator = OpenAIChatGenerator("m", base_url=server.url + "/v1", transport=settings, max_tokens=4)
        call = (lambda: list(generator.stream(TURNS))) if kind == "stream" else (lambda: asyncio.run(_collect(generator.astream(TURNS))))
        with pytest.raises(LimitExceeded) as caught:
            finishes(call)
    assert caught.value.limit == limit and f"{limit}=" in str(caught.value)


@pytest.mark.parametrize("kind", ["stream", "astream"])
def test_honest_answers_pass_under_the_same_limits(kind):
    def respond(path, body, headers):
        if body.get("stream"):
            return Reply(content_type="text/event-stream", body=_sse("Hello ", "there."))
        return Reply(body={"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there."}}]})

    with FakeServer(respond) as server:
        generator = OpenAIChatGenerator("m", base_url=server.url + "/v1", transport=SHORT)
        if kind == "stream":
            assert finishes(lambda: list(generator.stream(TURNS))) == ["Hello ", "there."]
            assert finishes(lambda: generator.generate(TURNS)) == "Hello there."
        else:
            assert finishes(lambda: asyncio.run(_collect(generator.astream(TURNS)))) == ["Hello ", "there."]
            assert finishes(lambda: asyncio.run(generator.agenerate(TURNS))) == "Hello there."


SOURCE = Candidate(id="a", modality="text", text="A red square.", score=0.9)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_answerer_timeout_bounds_a_stream_that_never_brings_text(kind):
    reply = Reply(content_type="text/event-stream", body=b": keep-alive\n\n", forever=b": keep-alive\n\n", every=0.02)
    with FakeServer(lambda path, body, headers: reply) as server:
        generator = OpenAIChatGenerator("m", base_url=server.url + "/v1", transport=TransportSettings(timeout=30.0, deadline=60.0))
        answerer = MultimodalAnswerer(generator, timeout=0.5)
        if kind == "sync":
            stream = answerer.stream(QUERY, [SOURCE])
            assert finishes(lambda: list(stream)) == []
        else:
            async def run():
                stream = await answerer.astream(QUERY, [SOURCE])
                return stream, [piece async for piece in stream]

            stream, pieces = finishes(lambda: asyncio.run(run()))
            assert pieces == []
    assert stream.answer.flag == "timeout" and "timeout=0.5" in stream.answer.error


class StuckGenerator:
    """A local generator that streams one piece, then waits until released (a model that hangs)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.closed = threading.Event()

    def generate(self, turns):
        return "never"

    def stream(self, turns):
        try:
            yield "The red one "
            self.release.wait(60)
            yield "is [1]."
        finally:
            self.closed.set()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_answerer_timeout_bounds_a_stuck_local_stream_and_keeps_what_came(kind):
    generator = StuckGenerator()
    answerer = MultimodalAnswerer(generator, timeout=0.8)
    try:
        if kind == "sync":
            stream = answerer.stream(QUERY, [SOURCE])
            assert finishes(lambda: list(stream)) == ["The red one "]
        else:
            async def run():
                stream = await answerer.astream(QUERY, [SOURCE])
                return stream, [piece async for piece in stream]

            stream, pieces = finishes(lambda: asyncio.run(run()))
            assert pieces == ["The red one "]
        assert stream.answer.flag == "timeout" and stream.answer.text == "The red one"
    finally:
        generator.release.set()
    assert generator.closed.wait(30)  # the abandoned stream was closed (a local model stops)


def test_answerer_without_timeout_streams_everything():
    generator = StuckGenerator()
    generator.release.set()
    stream = MultimodalAnswerer(generator).stream(QUERY, [SOURCE])
    assert finishes(lambda: list(stream)) == ["The red one ", "is [1]."]
    assert stream.answer.flag is None and stream.answer.cited == [1]
