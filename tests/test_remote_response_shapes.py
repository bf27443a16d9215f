"""Hostile answer shapes: any JSON value anywhere in a server's answer — numbers for lists, text
parts that are not text, log-probabilities of ±1e308, content that is a number — gives a flagged
``request_failed`` for that candidate (the rest of the batch scored) or a typed ``RemoteError``,
never a ``TypeError`` and never an unflagged infinite log-odds."""

from __future__ import annotations

import json
import math

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_rag_components.remote.answers import REQUEST_FAILED, answer_score, completion_top_logprobs
from mm_rag_components.remote.chat_generator import OpenAIChatGenerator
from mm_rag_components.remote.chat_scorer import OpenAIChatScorer
from mm_rag_components.remote.chat_stream import answer_text, chat_event
from mm_rag_components.remote.http import RemoteError
from mm_rag_components.remote.rerank_endpoint import RerankEndpointScorer
from mm_rag_components.remote.transport import TransportSettings
from mm_rag_components.rerank.chat import ChatTurn
from mm_rag_components.types import Candidate, Query
from remote_support import TEST_TEMPLATE, chat_reply, completion_reply, document_of

URL = "http://fake.test/v1"
QUERY = Query(text="a red circle")
NO_RETRY = TransportSettings(retries=0)

#: Any JSON value, with the numbers that break arithmetic.
NUMBERS = st.one_of(st.integers(), st.integers(min_value=10**300, max_value=10**310), st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from([1e308, -1e308, 0.0, -0.0, 5e-324, 1.0]))
JSON = st.recursive(st.none() | st.booleans() | NUMBERS | st.text(max_size=6),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)


def mutate(tree, path: list[int], value):
    """``tree`` with the node that ``path`` picks replaced by ``value``."""
    if not path:
        return value
    if isinstance(tree, dict) and tree:
        key = sorted(tree)[path[0] % len(tree)]
        return {**tree, key: mutate(tree[key], path[1:], value)}
    if isinstance(tree, list) and tree:
        i = path[0] % len(tree)
        return tree[:i] + [mutate(tree[i], path[1:], value)] + tree[i + 1:]
    return value


def texts(*docs: str) -> list[Candidate]:
    return [Candidate(id=str(i), modality="text", text=d) for i, d in enumerate(docs)]


def _scorer(hostile) -> OpenAIChatScorer:
    honest = chat_reply({"yes": -0.2, "no": -1.8})

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        return httpx.Response(200, content=json.dumps(hostile if document_of(body) == "trap" else honest).encode())

    scorer = OpenAIChatScorer("m", base_url=URL, template=TEST_TEMPLATE, transport=NO_RETRY)
    scorer.client._client = httpx.Client(transport=httpx.MockTransport(answer))
    return scorer


def _sound(point) -> bool:
    return 0.0 <= point.probability <= 1.0 and (point.flag is not None or math.isfinite(point.logodds))


@settings(max_examples=300, deadline=None)
@given(path=st.lists(st.integers(0, 9), max_size=7), value=JSON)
def test_any_shape_of_a_chat_answer_is_scored_or_flagged(path, value):
    hostile = mutate(chat_reply({"yes": -0.3, "no": -1.5, "maybe": -4.0}), path, value)
    points = _scorer(hostile).score(QUERY, texts("fine", "trap", "also fine"))
    assert len(points) == 3 and all(_sound(p) for p in points)
    assert points[0].flag is None and points[2].flag is None and points[0].probability > 0.5  # the batch is kept


@pytest.mark.parametrize("hostile, says", [
    (mutate(chat_reply({"yes": -0.2, "no": -1.8}), [0, 0, 1, 0, 0, 3], 5), "top_logprobs is int"),  # top_logprobs: 5
    ({"choices": [{"logprobs": {"content": [{"token": "yes", "logprob": 1e308, "top_logprobs": [{"token": "no", "logprob": -1e308}]}]}}]},
     "not a log-probability"),
    ({"choices": [{"logprobs": {"content": [{"token": "yes", "logprob": -0.1, "top_logprobs": ["yes", 3]}]}}]}, "not an object"),
    ({"choices": [{"logprobs": {"content": [7]}}]}, "not an object"),
])
def test_the_issue_shapes_are_flagged_request_failed(hostile, says):
    points = _scorer(hostile).score(QUERY, texts("fine", "trap"))
    assert points[0].flag is None
    assert points[1].flag == REQUEST_FAILED and says in points[1].detail and points[1].logodds == -math.inf


def test_extreme_but_valid_log_probabilities_stay_finite():
    point = answer_score([("yes", -1e308), ("no", 0.0)], ["yes"], ["no"], exact=True)
    assert point.flag is None and math.isfinite(point.logodds) and point.probability == 0.0
    point = answer_score([("yes", 0.0), ("other", -1e308)], ["yes"], ["no"], exact=True)  # a bound: 0 − (−1e308)
    assert point.flag == "partial_answer_logprobs" and math.isfinite(point.logodds) and point.probability == 1.0
    assert answer_score([("yes", 2e-5), ("no", -1.0)], ["yes"], ["no"], exact=True).flag is None  # rounding above 0
    assert answer_score([("yes", -10**400), ("no", -1.0)], ["yes"], ["no"], exact=True).flag == "partial_answer_logprobs"


@settings(max_examples=200, deadline=None)
@given(path=st.lists(st.integers(0, 9), max_size=7), value=JSON)
def test_any_shape_of_a_completions_answer_is_read_or_refused(path, value):
    hostile = mutate(completion_reply({"yes": -0.3, " no": -1.5}), path, value)
    try:
        pairs = completion_top_logprobs(hostile)
    except RemoteError:
        return
    if pairs is not None:
        assert _sound(answer_score(pairs, ["yes"], [" no"], exact=True))


@settings(max_examples=200, deadline=None)
@given(path=st.lists(st.integers(0, 9), max_size=6), value=JSON)
def test_any_shape_of_a_rerank_answer_is_scored_or_flagged(path, value):
    honest = {"results": [{"index": 0, "relevance_score": 0.9}, {"index": 1, "relevance_score": 0.2}]}
    hostile = mutate(honest, path, value)

    def answer(request: httpx.Request) -> httpx.Response:
        documents = json.loads(request.content)["documents"]
        return httpx.Response(200, content=json.dumps(hostile if documents[0] == "trap" else honest).encode())

    scorer = RerankEndpointScorer("m", base_url=URL, batch_size=2, transport=NO_RETRY)
    scorer.client._client = httpx.Client(transport=httpx.MockTransport(answer))
    points = scorer.score(QUERY, texts("fine", "ok", "trap", "more"))
    assert len(points) == 4 and all(_sound(p) for p in points)
    assert points[0].flag is None and points[0].probability == pytest.approx(0.9)


ANSWER = {"choices": [{"index": 0, "message": {"role": "assistant", "content": [{"type": "text", "text": "Hi."}]}}]}


@settings(max_examples=200, deadline=None)
@given(path=st.lists(st.integers(0, 9), max_size=7), value=JSON)
def test_any_shape_of_a_generated_answer_is_text_or_a_remote_error(path, value):
    hostile = mutate(ANSWER, path, value)
    try:
        assert isinstance(answer_text(hostile), str)
    except RemoteError:
        pass


@settings(max_examples=200, deadline=None)
@given(path=st.lists(st.integers(0, 9), max_size=6), value=JSON)
def test_any_shape_of_a_stream_event_is_read_or_a_remote_error(path, value):
    event = mutate({"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}, path, value)
    try:
        piece, end = chat_event("data: " + json.dumps(event), "/chat/completions")
    except RemoteError:
        return
    assert piece is None or isinstance(piece, str)
    assert end is None or isinstance(end, str)


@pytest.mark.parametrize("content", [12345, {"text": "x"}, [{"type": "text", "text": 5}], True])
def test_content_that_is_not_text_is_a_remote_error_not_silence(content):
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
    generator = OpenAIChatGenerator("m", base_url=URL, transport=NO_RETRY)
    generator.client._client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, json=answer)))
    with pytest.raises(RemoteError, match="not text|non-text"):
        generator.generate([ChatTurn("user", ("hi",))])
    event = {"choices": [{"index": 0, "delta": {"content": content}}]}
    with pytest.raises(RemoteError, match="not text"):
        chat_event("data: " + json.dumps(event), "/chat/completions")


def test_null_content_and_image_parts_are_still_fine():
    assert answer_text({"choices": [{"message": {"content": None}}]}) == ""
    parts = [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "b"}]
    assert answer_text({"choices": [{"message": {"content": parts}}]}) == "ab"


def test_json_nested_too_deep_is_a_remote_error():
    deep = b"[" * 100_000 + b"]" * 100_000
    generator = OpenAIChatGenerator("m", base_url=URL, transport=NO_RETRY)
    generator.client._client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, content=deep)))
    with pytest.raises(RemoteError, match="malformed JSON"):
        generator.generate([ChatTurn("user", ("hi",))])
