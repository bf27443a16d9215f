"""The web chat against hostile clients (issue 24, items 4, 5, 7, 11): session floods, oversized
questions and histories, users who leave, deep JSON, tampered media files, foreign Host headers,
cross-site POSTs, and the security headers on every reply."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import random
import re
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
from app_server import served
from fake_models import ColourShapeEmbedder
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_app_frontends import ColourScorer, Streamer

from mm_rag_components import MultimodalIndex
from mm_rag_components.answer import Exchange, MultimodalAnswerer
from mm_rag_components.app.guards import MAX_JSON_DEPTH, json_depth_within
from mm_rag_components.app.pipeline import QAPipeline
from mm_rag_components.app.sessions import SessionStore
from mm_rag_components.app.web import bounded_history, create_app
from mm_rag_components.rerank import PointwiseRanker
from mm_rag_components.scoring.base import PointScore

SETTINGS = settings(deadline=None, max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])


class Recorder:
    """A local streaming generator: answers ``answer`` (or "The red one is [1].") and records the
    chat turns it was given."""

    def __init__(self, answer: str = "The red one is [1].") -> None:
        self.answer = answer
        self.turns: list[list] = []

    def generate(self, turns):
        return "".join(self.stream(turns))

    def stream(self, turns):
        self.turns.append(turns)
        yield self.answer


def build_index(root) -> tuple[MultimodalIndex, object]:
    from mm_rag_components.testing import write_sample_folder

    folder = write_sample_folder(root / "data")
    index = MultimodalIndex(root / "db", image_embedder=ColourShapeEmbedder())
    index.ingest_folder(folder)
    return index, folder


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> MultimodalIndex:
    return build_index(tmp_path_factory.mktemp("guards"))[0]


def pipeline_of(index: MultimodalIndex, writer=None, scorer=None) -> QAPipeline:
    return QAPipeline(index, image_top_k=3, text_top_k=1, reranker=PointwiseRanker(scorer or ColourScorer()),
                      answerer=MultimodalAnswerer(writer or Streamer()))


def client_of(app, address: str = "127.0.0.1", **options):
    from starlette.testclient import TestClient

    return TestClient(app, base_url="http://localhost", client=(address, 40000), **options)


def events(response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


# --------------------------------------------------------------------------- 4. sessions


@SETTINGS
@given(session=st.one_of(st.none(), st.text(max_size=40), st.from_regex(r"[0-9a-f]{32}", fullmatch=True), st.integers(),
                         st.lists(st.integers(), max_size=3)))
def test_resetting_a_session_the_server_does_not_know_creates_nothing(index, session) -> None:
    app = create_app(pipeline_of(index))
    reply = client_of(app).post("/api/reset", json={"session": session})
    assert reply.status_code == 200 and reply.json() == {"session": None}
    assert len(app.state.service.sessions) == 0


@SETTINGS
@given(limit=st.integers(3, 12), per_client=st.integers(1, 4), data=st.data())
def test_one_clients_flood_of_new_sessions_never_evicts_another_clients_conversation(limit, per_client, data) -> None:
    store = SessionStore(max_sessions=limit, max_sessions_per_client=per_client)
    honest = {f"10.0.0.{n}": None for n in range(data.draw(st.integers(1, limit - 1), label="honest clients"))}
    for address in honest:
        honest[address] = store.open(None, address)
        store.append(honest[address], Exchange("q", "a"), address)
    for step in data.draw(st.lists(st.sampled_from(["flood", "reset", "honest"]), max_size=5 * limit), label="steps"):
        if step == "flood":
            store.open(None, "203.0.113.7")
        elif step == "reset":
            assert store.reset(data.draw(st.from_regex(r"[0-9a-f]{32}", fullmatch=True), label="made-up id")) is False
        else:
            address = data.draw(st.sampled_from(sorted(honest)), label="who")
            assert store.open(honest[address], address) == honest[address]
        assert len(store) <= limit
    for address, session in honest.items():
        assert store.open(session, address) == session and store.history(session) == [Exchange("q", "a")]


def test_through_the_web_a_flood_of_asks_and_resets_leaves_live_conversations_alone(index) -> None:
    app = create_app(pipeline_of(index), sessions=SessionStore(max_sessions=6, max_sessions_per_client=3))
    people = {address: client_of(app, address) for address in ("198.51.100.1", "198.51.100.2", "198.51.100.3")}
    sessions = {address: events(c.post("/api/ask", json={"question": "red"}))[0]["session"] for address, c in people.items()}
    attacker = client_of(app, "203.0.113.66")
    for n in range(20):
        assert events(attacker.post("/api/ask", json={"question": f"red {n}"}))[-1]["event"] == "done"
        assert attacker.post("/api/reset", json={"session": f"{n:032x}"}).json() == {"session": None}
    assert len(app.state.service.sessions) <= 6
    for address, person in people.items():
        follow_up = events(person.post("/api/ask", json={"question": "and blue?", "session": sessions[address]}))
        assert follow_up[0]["session"] == sessions[address] and follow_up[0]["exchange"] == 2


# --------------------------------------------------------------------------- 5. sizes and users who leave


@SETTINGS
@given(extra=st.integers(1, 5000), alphabet=st.sampled_from(["x", "é", "🙂", " a"]))
def test_a_question_over_the_limit_is_413_before_any_model_runs(index, extra, alphabet) -> None:
    writer = Recorder()
    app = create_app(pipeline_of(index, writer), max_question_chars=300)
    client = client_of(app)
    question = (alphabet * (300 + extra))[: 300 + extra]
    reply = client.post("/api/ask", json={"question": question})
    assert reply.status_code == 413 and reply.json()["kind"] == "too_large" and "at most 300" in reply.json()["error"]
    assert writer.turns == [] and app.state.service.admission.running == 0
    fits = events(client.post("/api/ask", json={"question": question[:300]}))
    assert fits[-1]["event"] == "done" and len(writer.turns) == 1


@SETTINGS
@given(answers=st.lists(st.integers(0, 3000), min_size=1, max_size=5), limit=st.integers(50, 2000))
def test_the_history_sent_to_the_model_is_bounded(index, answers, limit) -> None:
    writer = Recorder()
    app = create_app(pipeline_of(index, writer), max_history_chars=limit)
    client, session = client_of(app), None
    for length in answers:
        writer.answer = "y" * length
        session = events(client.post("/api/ask", json={"question": "red", "session": session}))[0]["session"]
    writer.answer = "done"
    assert events(client.post("/api/ask", json={"question": "red", "session": session}))[-1]["event"] == "done"
    history = writer.turns[-1][1:-1]
    assert sum(len(turn.text) for turn in history) <= limit
    if 3 + answers[-1] <= limit:  # the latest exchange fits: it is sent
        assert history[-1].text == "y" * answers[-1]


@SETTINGS
@given(sizes=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 3000)), max_size=8), limit=st.integers(1, 3000))
def test_bounded_history_keeps_the_latest_exchanges_that_fit(sizes, limit) -> None:
    history = [Exchange("q" * q, "a" * a) for q, a in sizes]
    kept = bounded_history(history, limit)
    assert sum(len(e.question) + len(e.answer) for e in kept) <= limit
    whole = [e for e in kept if e in history]
    assert whole == history[len(history) - len(whole):]  # a suffix: the most recent ones
    if len(whole) < len(history):  # the next older one would not have fit
        older = history[len(history) - len(whole) - 1]
        assert sum(len(e.question) + len(e.answer) for e in whole) + len(older.question) + len(older.answer) > limit


class GatedScorer:
    """A local scorer that records each query and waits for ``gate`` before scoring."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.asked: list[str] = []

    def score(self, query, candidates):
        self.asked.append(query.text)
        if not self.gate.wait(30):
            raise TimeoutError("gate never opened")
        return [PointScore.from_logodds(1.0) for _ in candidates]


def test_a_local_model_does_no_work_for_users_who_left(index) -> None:
    """One user leaves while their sources are being reranked, the next while waiting for the
    model: neither's question goes any further, and the next user is answered."""
    scorer, writer = GatedScorer(), Recorder()
    app = create_app(pipeline_of(index, writer, scorer), queue=2)

    async def scenario(url: str):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:

            async def ask(question: str):
                async with client.stream("POST", "/api/ask", json={"question": question}) as reply:
                    return [json.loads(line) async for line in reply.aiter_lines() if line]

            async def until(check):
                deadline = time.monotonic() + 20
                while not check((await client.get("/api/health")).json()):
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.02)

            first = asyncio.create_task(ask("red first"))
            await until(lambda _: scorer.asked == ["red first"])
            first.cancel()  # left while the reranker works on their question
            await until(lambda h: h["running"] == 0)
            second = asyncio.create_task(ask("red second"))
            await until(lambda h: h["running"] == 1)
            await asyncio.sleep(0.2)  # waiting for the model the first question still holds
            second.cancel()
            await until(lambda h: h["running"] == 0)
            scorer.gate.set()
            return await ask("red third")

    with served(app) as url:
        third = asyncio.run(scenario(url))
    assert third[-1]["event"] == "done" and third[-1]["turn"]["question"]["text"] == "red third"
    assert scorer.asked == ["red first", "red third"]  # nothing reranked for the second, who had left
    assert [turns[-1].text.count("red third") for turns in writer.turns] == [1]  # one answer: the third's


# --------------------------------------------------------------------------- 7. deep JSON


def _nested(depth: int, rnd, leaf: str = "1") -> str:
    opens = [rnd.choice("[{") for _ in range(depth)]
    head = "".join("[" if o == "[" else '{"k":' for o in opens)
    return head + leaf + "".join("]" if o == "[" else "}" for o in reversed(opens))


@SETTINGS
@given(depth=st.integers(MAX_JSON_DEPTH + 1, 5000), where=st.sampled_from(["body", "question", "session", "image"]), rnd=st.randoms())
@example(depth=200_000, where="session", rnd=random.Random(0))
def test_deeply_nested_json_is_a_400_with_a_json_error(index, depth, where, rnd) -> None:
    app = create_app(pipeline_of(index))
    deep = _nested(depth, rnd)
    body = deep if where == "body" else f'{{"question": "red", "{where}": {deep}}}'
    reply = client_of(app, raise_server_exceptions=False).post("/api/ask", content=body, headers={"content-type": "application/json"})
    assert reply.status_code == 400 and reply.json()["kind"] == "bad_request" and "nested more than" in reply.json()["error"]


def _depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


_TRICKY = st.text(alphabet='[]{}"\\ab\n\u00e9', max_size=8)
_JSON = st.recursive(st.none() | st.booleans() | st.integers() | _TRICKY,
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TRICKY, inner, max_size=3), max_leaves=20)


@settings(deadline=None, max_examples=200)
@given(value=_JSON, limit=st.integers(0, 8), ascii_only=st.booleans())
def test_the_depth_check_agrees_with_the_parsed_depth(value, limit, ascii_only) -> None:
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert json_depth_within(body, limit) == (_depth(value) <= limit)


# --------------------------------------------------------------------------- 11. media files


def _tamper(kind: str, path, root) -> None:
    secret = root / "secret.txt"
    secret.write_bytes(b"SECRET key material")
    original = path.read_bytes()
    if kind != "unchanged":
        os.remove(path)
    if kind == "symlink to a secret":
        os.symlink(secret, path)
    elif kind == "symlink to an identical copy":
        copy = root / "copy.png"
        copy.write_bytes(original)
        os.symlink(copy, path)
    elif kind == "another image":
        from PIL import Image

        Image.new("RGB", (8, 8), (1, 2, 3)).save(path)
    elif kind == "same size, other bytes":
        path.write_bytes(bytes(len(original)))
    elif kind == "a FIFO":
        os.mkfifo(path)
    elif kind == "a folder":
        path.mkdir()
    elif kind == "folder swapped for a symlink":
        path.write_bytes(original)
        decoy = root / "decoy"
        decoy.mkdir()
        (decoy / path.name).write_bytes(b"SECRET key material")
        shutil.move(str(path.parent), str(root / "moved"))
        os.symlink(decoy, path.parent)


TAMPERINGS = ["symlink to a secret", "symlink to an identical copy", "another image", "same size, other bytes", "a FIFO", "a folder",
              "deleted", "folder swapped for a symlink"]


@pytest.mark.parametrize("kind", ["unchanged", *TAMPERINGS])
def test_media_serves_only_the_file_that_was_ingested(tmp_path, kind) -> None:
    built, _ = build_index(tmp_path)
    client = client_of(create_app(pipeline_of(built)))
    source = next(s for s in events(client.post("/api/ask", json={"question": "red"}))[-1]["turn"]["kept"] if s["media"])
    urls = [source["media"], f"/media/{source['id']}"]
    assert all(client.get(url).status_code == 200 for url in urls)
    _tamper(kind, Path(source["image_path"]), tmp_path)
    for url in urls:
        reply = client.get(url)
        assert b"SECRET" not in reply.content
        assert reply.status_code == (200 if kind == "unchanged" else 404), (kind, url)


# --------------------------------------------------------------------------- 11. Host, Origin, Content-Type, headers

_NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,15}(\.[a-z][a-z0-9-]{0,15}){0,3}", fullmatch=True).filter(
    lambda n: n != "localhost" and not n.endswith(".localhost"))
_ROUTES = [("GET", "/"), ("GET", "/api/health"), ("GET", "/media/x"), ("POST", "/api/ask"), ("POST", "/api/reset")]


@SETTINGS
@given(name=_NAMES, port=st.one_of(st.none(), st.integers(1, 65535)), route=st.sampled_from(_ROUTES))
def test_a_host_name_the_server_was_not_started_for_is_refused(index, name, port, route) -> None:
    writer = Recorder()
    app = create_app(pipeline_of(index, writer), allowed_hosts=["chat.example.org", "*.intranet.test"])
    host = name + (f":{port}" if port else "")
    reply = client_of(app).request(*route, headers={"host": host}, json={"question": "red"})
    allowed = name in ("chat.example.org",) or name.endswith(".intranet.test")
    assert (reply.status_code != 400) if allowed else (reply.status_code == 400 and reply.json()["kind"] == "bad_host")
    assert writer.turns == [] or allowed


@SETTINGS
@given(address=st.ip_addresses(), route=st.sampled_from(_ROUTES[:3]))
def test_ip_addresses_and_localhost_are_always_answered(index, address, route) -> None:
    client = client_of(create_app(pipeline_of(index)))
    for host in (f"[{address}]:8765" if address.version == 6 else f"{address}:8765", "localhost", "LOCALHOST:1", "app.localhost"):
        assert client.request(*route, headers={"host": host}).status_code != 400


@SETTINGS
@given(scheme=st.sampled_from(["http", "https"]), name=_NAMES, port=st.one_of(st.none(), st.integers(1, 65535)))
@example(scheme="http", name="localhost", port=8765)  # another server on this machine
def test_a_cross_site_post_is_refused(index, scheme, name, port) -> None:
    writer = Recorder()
    client = client_of(create_app(pipeline_of(index, writer)))
    origin = f"{scheme}://{name}" + (f":{port}" if port else "")
    for path in ("/api/ask", "/api/reset"):
        reply = client.post(path, json={"question": "red"}, headers={"origin": origin})
        assert reply.status_code == 403 and reply.json()["kind"] == "cross_origin"
    assert client.post("/api/ask", json={"question": "red"}, headers={"origin": "null"}).status_code == 403
    assert writer.turns == []
    same = client.post("/api/ask", json={"question": "red"}, headers={"origin": "http://localhost"})
    assert same.status_code == 200 and events(same)[-1]["event"] == "done"


@pytest.mark.parametrize("content_type", [None, "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/jsonp", "text/json"])
def test_the_api_takes_json_only(index, content_type) -> None:
    writer = Recorder()
    app = create_app(pipeline_of(index, writer))
    client = client_of(app)
    headers = {} if content_type is None else {"content-type": content_type}
    for path in ("/api/ask", "/api/reset"):
        reply = client.post(path, content=json.dumps({"question": "red"}), headers=headers)
        assert reply.status_code == 415 and reply.json()["kind"] == "unsupported_media_type"
    assert writer.turns == [] and len(app.state.service.sessions) == 0


@pytest.mark.parametrize("method, path", [*_ROUTES, ("GET", "/nowhere")])
def test_every_reply_carries_the_security_headers(index, method, path) -> None:
    reply = client_of(create_app(pipeline_of(index))).request(method, path, json={"question": "red"})
    assert reply.headers["x-content-type-options"] == "nosniff" and reply.headers["x-frame-options"] == "DENY"
    policy = reply.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
    if path == "/":
        assert "'unsafe-inline'" not in policy and "script-src 'sha256-" in policy and "connect-src 'self'" in policy


def test_the_page_policy_allows_exactly_its_own_script(index) -> None:
    reply = client_of(create_app(pipeline_of(index), note="<script>alert(1)</script>")).get("/")
    scripts = re.findall(r"<script>(.*?)</script>", reply.text, re.S)
    assert len(scripts) == 1  # the note is escaped, not a second script
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}';" in reply.headers["content-security-policy"]
