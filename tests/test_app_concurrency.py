"""The web chat with many users: concurrent questions on servers (fake fast ones here), the bound
and its 503, the queue and its positions with a local model, sessions kept apart and shared by
workers, failures mid-answer, users who leave."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time

import httpx
import pytest
from app_server import served
from fake_models import ColourShapeEmbedder
from fake_openai import FakeOpenAI, echo, question_of

from mm_rag_components import MultimodalIndex
from mm_rag_components.answer import MultimodalAnswerer
from mm_rag_components.app.pipeline import QAPipeline
from mm_rag_components.app.sessions import SessionStore
from mm_rag_components.app.web import create_app
from mm_rag_components.errors import ConfigError
from mm_rag_components.rerank import PointwiseRanker
from mm_rag_components.remote.chat_generator import OpenAIChatGenerator
from mm_rag_components.remote.chat_scorer import OpenAIChatScorer
from mm_rag_components.remote.transport import TransportSettings


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> MultimodalIndex:
    from mm_rag_components.testing import write_sample_folder

    root = tmp_path_factory.mktemp("many")
    built = MultimodalIndex(root / "db", image_embedder=ColourShapeEmbedder())
    built.ingest_folder(write_sample_folder(root / "data"))
    return built


def remote_pipeline(index: MultimodalIndex, server: FakeOpenAI) -> QAPipeline:
    scorer = OpenAIChatScorer("judge", base_url=server.url, transport=TransportSettings(backoff=0.0))
    writer = OpenAIChatGenerator("writer", base_url=server.url, transport=TransportSettings(backoff=0.0, retries=0))
    return QAPipeline(index, image_top_k=3, text_top_k=1, reranker=PointwiseRanker(scorer), answerer=MultimodalAnswerer(writer))


class GatedWriter:
    """A local (not remote) streaming generator that waits for ``gate`` before each piece and
    records whether each stream ran to its end."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.finished: list[bool] = []

    def generate(self, turns):
        return "".join(self.stream(turns))

    def stream(self, turns):
        complete = False
        try:
            for piece in ("It is ", "red ", "[1]."):
                if not self.gate.wait(30):
                    raise TimeoutError("gate never opened")
                yield piece
            complete = True
        finally:
            self.finished.append(complete)


def local_pipeline(index: MultimodalIndex, writer: GatedWriter) -> QAPipeline:
    return QAPipeline(index, image_top_k=2, modalities=["image"], answerer=MultimodalAnswerer(writer))


async def ask(client: httpx.AsyncClient, question: str, session: str | None = None) -> tuple[int, dict, list[dict]]:
    """(status, headers, events) of one question."""
    async with client.stream("POST", "/api/ask", json={"question": question, "session": session}) as reply:
        body = [line async for line in reply.aiter_lines() if line]
        events = [json.loads(line) for line in body] if reply.status_code == 200 else [json.loads(body[0])]
        return reply.status_code, dict(reply.headers), events


async def wait_until(client: httpx.AsyncClient, check, timeout: float = 120.0) -> dict:
    """Poll the health route until ``check`` holds; the timeout is a hang guard, not a timing check."""
    deadline = time.monotonic() + timeout
    while True:
        health = (await client.get("/api/health")).json()
        if check(health):
            return health
        assert time.monotonic() < deadline, f"the server never reached the expected state: {health}"
        await asyncio.sleep(0.02)


def open_when_streaming(server: FakeOpenAI, count: int, hang_guard: float = 120.0) -> None:
    """Open ``server.gate`` once ``count`` answers stream at the same time (or after the hang guard)."""
    deadline = time.monotonic() + hang_guard
    while server.streams < count and time.monotonic() < deadline:
        time.sleep(0.01)
    server.gate.set()


# --------------------------------------------------------------------------- servers: concurrent


def test_users_ask_concurrently_and_each_gets_the_answer_to_their_own_question(index) -> None:
    users, questions = 6, 3
    with FakeOpenAI(answer=echo) as server, served(create_app(remote_pipeline(index, server))) as url:
        server.gate.clear()  # the first answers wait until two stream at once: overlap whatever the load
        threading.Thread(target=open_when_streaming, args=(server, 2), daemon=True).start()

        async def user(number: int, client: httpx.AsyncClient) -> list[tuple[str, list[dict]]]:
            session, seen = None, []
            for q in range(questions):
                text = f"red circle u{number}q{q}"
                status, _, events = await ask(client, text, session)
                assert status == 200, events
                session = events[0]["session"]
                seen.append((text, events))
            return seen

        async def everyone():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                return await asyncio.gather(*(user(n, client) for n in range(users)))

        results = asyncio.run(everyone())
        assert server.max_streams >= 2  # answers really were streamed at the same time
        sessions = set()
        for number, conversation in enumerate(results):
            session = conversation[0][1][0]["session"]
            sessions.add(session)
            for exchange, (text, events) in enumerate(conversation, start=1):
                kinds = [e["event"] for e in events]
                assert kinds[0] == "turn" and kinds[-1] == "done" and set(kinds[1:-1]) == {"token"}, kinds
                assert events[0]["session"] == session and events[0]["exchange"] == exchange
                done = events[-1]["turn"]
                assert done["question"]["text"] == text
                assert done["answer"]["text"] == f"Answer to <{text}> [1]."  # its own question, nobody else's
                assert "".join(e["text"] for e in events if e["event"] == "token") == f"Answer to <{text}> [1]."
        assert len(sessions) == users
        # each follow-up was asked with its own conversation's history, and only that
        for body in server.answered():
            asked = question_of(body)
            who = re.search(r"u(\d+)q(\d+)", asked)
            history = [m["content"] for m in body["messages"][1:-1]]
            earlier = [h for h in history if h.startswith("red circle")]
            assert earlier == [f"red circle u{who[1]}q{k}" for k in range(int(who[2]))]


def test_over_the_bound_a_question_is_refused_at_once_with_503_and_retry_after(index) -> None:
    with FakeOpenAI(answer=echo) as server:
        app = create_app(remote_pipeline(index, server), max_concurrent_questions=2)
        with served(app) as url:

            async def scenario():
                async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                    server.gate.clear()
                    running = [asyncio.create_task(ask(client, f"red circle {n}")) for n in range(2)]
                    await wait_until(client, lambda h: h["running"] == 2)
                    status, headers, events = await ask(client, "one too many")
                    # refused at once: while both answers are still held at the gate, not after a slot freed
                    held = [not task.done() for task in running], (await client.get("/api/health")).json()["running"]
                    server.gate.set()
                    finished = await asyncio.gather(*running)
                    after = await ask(client, "red circle again")
                    return status, headers, events, held, finished, after

            status, headers, events, held, finished, after = asyncio.run(scenario())
    assert status == 503 and events[0]["kind"] == "busy" and "busy" in events[0]["error"]
    assert headers["retry-after"].isdigit() and 1 <= int(headers["retry-after"]) <= 120
    assert held == ([True, True], 2)
    assert [f[2][-1]["event"] for f in finished] == ["done", "done"]
    assert after[0] == 200 and after[2][-1]["event"] == "done"


def test_an_answer_that_breaks_off_is_an_error_event_and_the_next_question_is_answered(index) -> None:
    with FakeOpenAI(answer=echo) as server, served(create_app(remote_pipeline(index, server))) as url:

        async def scenario():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                server.break_streams = True
                broken = await ask(client, "red circle")
                server.break_streams = False
                fine = await ask(client, "red circle", broken[2][0]["session"])
                health = (await client.get("/api/health")).json()
                return broken, fine, health

        broken, fine, health = asyncio.run(scenario())
    last = broken[2][-1]
    assert last["event"] == "error" and last["kind"] == "answer_failed" and "ended before the answer did" in last["message"]
    assert last["turn"]["kept"]  # the sources are still shown
    assert fine[2][-1]["event"] == "done" and fine[2][0]["exchange"] == 1  # the failed one is not remembered
    assert health["running"] == 0 and health["mode"] == "concurrent"


def test_a_server_that_cannot_be_reached_is_a_clear_error_event(index) -> None:
    with FakeOpenAI() as server:
        pipeline = remote_pipeline(index, server)
    with served(create_app(pipeline)) as url:  # the model server is gone
        with httpx.Client(base_url=url, timeout=60) as client:
            events = [json.loads(line) for line in client.post("/api/ask", json={"question": "red circle"}).text.splitlines()]
    turn, last = events[0], events[-1]
    assert turn["event"] == "turn" and any("could not score" in note and "request_failed" in note for note in turn["turn"]["notes"])
    assert last["event"] == "error" and last["kind"] == "answer_failed" and "cannot reach" in last["message"]


# --------------------------------------------------------------------------- a local model: one at a time


def test_with_a_local_model_users_wait_in_line_and_see_their_place(index) -> None:
    writer = GatedWriter()
    app = create_app(local_pipeline(index, writer), queue=2)
    with served(app) as url:

        async def scenario():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                first = asyncio.create_task(ask(client, "red circle first"))
                await wait_until(client, lambda h: h["running"] == 1)
                second = asyncio.create_task(ask(client, "red circle second"))
                await wait_until(client, lambda h: h["waiting"] == 1)
                third = asyncio.create_task(ask(client, "red circle third"))
                await wait_until(client, lambda h: h["waiting"] == 2)
                refused = await ask(client, "red circle fourth")
                writer.gate.set()
                return await asyncio.gather(first, second, third), refused

        (first, second, third), refused = asyncio.run(scenario())
    assert app.state.service.admission.capacity == 1
    assert refused[0] == 503 and refused[2][0]["kind"] == "busy"
    assert [e["event"] for e in first[2]][0] == "turn"
    assert [(e["event"], e.get("position")) for e in second[2] if e["event"] == "queued"] == [("queued", 1)]
    assert [(e["event"], e.get("position")) for e in third[2] if e["event"] == "queued"] == [("queued", 2), ("queued", 1)]
    for result, text in ((first, "first"), (second, "second"), (third, "third")):
        assert result[2][-1]["event"] == "done" and result[2][-1]["turn"]["question"]["text"] == f"red circle {text}"
    assert writer.finished == [True, True, True]


def test_a_user_who_leaves_frees_the_slot_and_the_local_model_stops(index) -> None:
    writer = GatedWriter()
    app = create_app(local_pipeline(index, writer), queue=1)
    with served(app) as url:

        async def scenario():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                async with client.stream("POST", "/api/ask", json={"question": "red circle"}) as reply:
                    first = json.loads(await reply.aiter_lines().__anext__())
                    await wait_until(client, lambda h: h["running"] == 1)
                # the user left mid-answer (connection closed)
                await wait_until(client, lambda h: h["running"] == 0)
                writer.gate.set()
                return first, await ask(client, "red circle again")

        first, after = asyncio.run(scenario())
    assert first["event"] == "turn"
    assert after[0] == 200 and after[2][-1]["event"] == "done"
    assert writer.finished == [False, True]  # the abandoned answer stopped early


def test_max_concurrent_questions_needs_servers(index) -> None:
    with pytest.raises(ConfigError, match="local models answer one question at a time"):
        create_app(local_pipeline(index, GatedWriter()), max_concurrent_questions=4)
    with pytest.raises(ConfigError, match="queue"):
        create_app(local_pipeline(index, GatedWriter()), queue=-1)


# --------------------------------------------------------------------------- sessions shared by workers


def test_two_workers_sharing_a_session_file_continue_each_others_conversations(index, tmp_path) -> None:
    from starlette.testclient import TestClient

    with FakeOpenAI(answer=echo) as server:
        workers = [TestClient(create_app(remote_pipeline(index, server), sessions=SessionStore(tmp_path / "sessions.sqlite")),
                              base_url="http://localhost")
                   for _ in range(2)]
        session = None
        for number in range(4):
            reply = workers[number % 2].post("/api/ask", json={"question": f"red circle q{number}", "session": session})
            events = [json.loads(line) for line in reply.text.splitlines()]
            session = events[0]["session"]
            assert events[0]["exchange"] == number + 1 and events[-1]["event"] == "done"
        last = server.answered()[-1]  # worker 1 answers q3 with the exchanges both workers had
        assert [m["content"] for m in last["messages"][1:-1] if m["role"] == "user"] == [f"red circle q{k}" for k in range(3)]


def test_session_store_bounds_and_ids(tmp_path, monkeypatch) -> None:
    from mm_rag_components.answer import Exchange

    clock = {"now": 1000.0}

    def tick() -> float:
        clock["now"] += 0.01
        return clock["now"]

    monkeypatch.setattr("mm_rag_components.app.sessions.time.time", tick)
    store = SessionStore(tmp_path / "s.sqlite", max_sessions=3, max_age=100.0, max_exchanges=2)
    first = store.open()
    assert re.fullmatch(r"[0-9a-f]{32}", first) and store.open(first) == first
    for n in range(3):
        store.append(first, Exchange(f"q{n}", f"a{n}"))
    assert store.history(first) == [Exchange("q1", "a1"), Exchange("q2", "a2")]  # the last max_exchanges
    others = [store.open(made_up) for made_up in ("nope", "0" * 32)]  # unknown ids start new sessions
    assert len(set(others) | {first}) == 3 and not {"nope", "0" * 32} & set(others)
    assert store.open(first) == first  # now the most recently used
    for made_up in (42, "../../etc"):
        assert store.open(made_up) not in (first, made_up)
    assert len(store) == 3  # the least recently used went first
    assert store.open(first) == first and store.history(first)[-1] == Exchange("q2", "a2")
    assert store.open(others[0]) != others[0]  # evicted
    clock["now"] += 101
    assert store.open(first) != first  # idle too long: a new session
    assert store.history(first) == []
    again = SessionStore(tmp_path / "s.sqlite", max_sessions=3, max_age=100.0, max_exchanges=2)  # another worker, or a restart
    latest = store.open()
    store.append(latest, Exchange("kept", "yes"))
    assert again.open(latest) == latest and again.history(latest) == [Exchange("kept", "yes")]
    again.reset(latest)
    assert store.history(latest) == []


@pytest.mark.parametrize("option, value", [
    ("max_sessions", 0), ("max_sessions", -1), ("max_sessions", 1.5), ("max_sessions", "9"), ("max_sessions", True),
    ("max_age", 0), ("max_age", -5.0), ("max_age", float("nan")), ("max_age", "day"),
    ("max_exchanges", 0), ("max_exchanges", None),
])
def test_session_store_refuses_bad_settings(option, value) -> None:
    with pytest.raises(ConfigError, match=option):
        SessionStore(**{option: value})


def test_session_store_in_an_unusable_place_is_a_config_error(tmp_path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ConfigError, match="cannot open the session store"):
        SessionStore(tmp_path / "file" / "sessions.sqlite")


# --------------------------------------------------------------------------- admission, directly


def test_admission_runs_queues_refuses_and_moves_the_line_up() -> None:
    from mm_rag_components.app.admission import Admission, Busy

    async def scenario():
        admission = Admission(2, queue=2)
        running = [admission.enter(), admission.enter()]
        assert all(t.admitted for t in running) and admission.running == 2
        first, second = admission.enter(), admission.enter()
        assert (first.position, second.position) == (1, 2)
        with pytest.raises(Busy) as refused:
            admission.enter()
        assert refused.value.retry_after >= 1 and "2 question(s) running and 2 waiting" in str(refused.value)
        places = []

        async def follow(ticket):
            async for place in ticket.wait():
                places.append((ticket is first, place))

        watchers = [asyncio.create_task(follow(first)), asyncio.create_task(follow(second))]
        await asyncio.sleep(0)
        first.release()  # the first in line gave up: the second moves up
        await asyncio.sleep(0)
        running[0].release()  # a slot frees: the second runs
        await asyncio.gather(*watchers)
        running[0].release()  # twice: nothing more happens
        assert second.admitted and admission.running == 2 and admission.waiting == 0
        return places

    assert asyncio.run(scenario()) == [(True, 1), (False, 2), (False, 1)]


@pytest.mark.parametrize("capacity, queue", [(0, 0), (-1, 0), (1.5, 0), ("2", 0), (True, 0), (None, 0), (1, -1), (1, 0.5), (1, "3")])
def test_admission_refuses_bad_bounds(capacity, queue) -> None:
    from mm_rag_components.app.admission import Admission

    with pytest.raises(ConfigError):
        Admission(capacity, queue)


@pytest.mark.parametrize("option, value", [("max_concurrent_questions", 0), ("max_concurrent_questions", "8"),
                                           ("max_concurrent_questions", 2.5), ("queue", -1), ("queue", "3"), ("queue", 1.5)])
def test_create_app_refuses_bad_bounds(index, option, value) -> None:
    with FakeOpenAI() as server:
        with pytest.raises(ConfigError, match=option):
            create_app(remote_pipeline(index, server), **{option: value})


@pytest.mark.parametrize("session", [42, ["a"], {"id": 1}, "x" * 10_000, "", "../../etc/passwd", "0" * 32])
def test_a_session_id_the_server_did_not_make_starts_a_new_conversation(index, session) -> None:
    from starlette.testclient import TestClient

    with FakeOpenAI(answer=echo) as server:
        app = create_app(remote_pipeline(index, server))
        client = TestClient(app, base_url="http://localhost")
        events = [json.loads(line) for line in client.post("/api/ask", json={"question": "red", "session": session}).text.splitlines()]
        reset = client.post("/api/reset", json={"session": session}).json()
    assert events[-1]["event"] == "done" and events[0]["exchange"] == 1
    assert re.fullmatch(r"[0-9a-f]{32}", events[0]["session"]) and events[0]["session"] != session
    assert reset == {"session": None} and len(app.state.service.sessions) == 1  # resetting it created nothing
