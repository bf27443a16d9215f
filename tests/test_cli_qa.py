"""``mm-rag query --rerank/--filter/--json``, ``chat``, ``serve``, and ``eval``/``parity`` through
``mm-rag``: tiny offline models, and URL model specs routed to a fake OpenAI-compatible server."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_openai import FakeOpenAI, echo
from remote_support import free_port

from mm_rag_components.cli import TINY_LABEL, build_parser, main, models, store

@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> tuple[Path, str]:
    """(sample folder, database) ingested with the tiny CLIP, and the tiny VLM built beside it."""
    from mm_rag_components.testing import write_sample_folder

    root = tmp_path_factory.mktemp("cli-qa")
    folder = write_sample_folder(root / "data")
    db = str(root / "state" / "chroma")
    assert main(["ingest", str(folder), "--tiny", "--db", db]) == 0
    models.tiny_vlm(db)
    return folder, db


def _json(argv: list[str], capsys) -> dict[str, Any]:
    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mm-rag: error: "), err
    return lines[0]


# --------------------------------------------------------------------------- query


def test_query_pointwise_with_filter_prints_scores_kept_and_dropped_as_json(indexed, capsys):
    _, db = indexed
    base = ["query", "a red circle", "--tiny", "--db", db, "--rerank", "pointwise", "--json"]
    everything = _json(base, capsys)
    assert everything["tiny_models"] is True and "tiny" in everything["models"]["reranker"]
    ranked = everything["kept"]
    assert everything["dropped"] == [] and len(ranked) == everything["ranked"] == everything["retrieved"] == 8
    scores = [c["metadata"]["rerank_score"] for c in ranked]
    assert all(0.0 < s < 1.0 for s in scores) and scores == sorted(scores, reverse=True)
    assert all(isinstance(c["metadata"]["retrieval_score"], float) for c in ranked)

    top2 = _json([*base, "--filter", "max_k=2"], capsys)
    assert [c["id"] for c in top2["kept"]] == [c["id"] for c in ranked[:2]]
    assert {d["reason"] for d in top2["dropped"]} == {"over_max_k"} and len(top2["dropped"]) == 6

    threshold = (scores[2] + scores[3]) / 2  # between the 3rd and 4th score: 3 kept
    cut = _json([*base, "--filter", f"threshold={threshold}", "--filter", "score_key=rerank_score"], capsys)
    assert [c["id"] for c in cut["kept"]] == [c["id"] for c in ranked[:3]]
    assert all(d["reason"] == "below_threshold" and d["metadata"]["rerank_score"] < threshold for d in cut["dropped"])


def test_query_pointwise_plain_output_and_filter_without_rerank(indexed, capsys):
    _, db = indexed
    capsys.readouterr()
    assert main(["query", "a red circle", "--tiny", "--db", db, "--rerank", "pointwise", "--filter", "max_k=1"]) == 0
    out = capsys.readouterr().out
    assert "reranker: pointwise, tiny random-weight VLM" in out and "(filter kept 1 of 8)" in out
    assert out.count("(dropped: over_max_k)") == 7 and "rerank 0." in out and "retrieval " in out
    assert TINY_LABEL in out
    plain = _json(["query", "a red circle", "--tiny", "--db", db, "--filter", "max_k=3", "--json"], capsys)
    assert plain["models"]["reranker"] is None and len(plain["kept"]) == 3  # a filter on retrieval scores


def test_query_listwise_with_the_tiny_model_keeps_every_candidate(indexed, capsys):
    _, db = indexed
    retrieved = _json(["query", "a red circle", "--tiny", "--db", db, "--json"], capsys)
    listwise = _json(["query", "a red circle", "--tiny", "--db", db, "--rerank", "listwise", "--window", "4", "--json"], capsys)
    assert sorted(c["id"] for c in listwise["kept"]) == sorted(c["id"] for c in retrieved["kept"])
    assert all("listwise_rank" in c["metadata"] for c in listwise["kept"])


def test_url_reranker_specs_go_to_the_remote_classes(indexed, capsys):
    _, db = indexed
    base = ["query", "a red circle", "--tiny", "--db", db, "--modalities", "image", "--top-k", "4", "--json"]
    retrieved = [c["id"] for c in _json(base, capsys)["kept"]]
    with FakeOpenAI() as server:
        pointwise = _json([*base, "--rerank", "pointwise", "--reranker", server.url, "--reranker-model", "judge"], capsys)
        assert [c["metadata"]["rerank_score"] for c in pointwise["kept"]] == [pytest.approx(0.8320, abs=1e-3)] * 4  # sigmoid(1.6)
        assert [r["model"] for r in server.requests] == ["judge"] * 4 and all(r["logprobs"] for r in server.requests)
        assert "judge at http://127.0.0.1" in pointwise["models"]["reranker"]
        server.requests.clear()
        listwise = _json([*base, "--rerank", "listwise", "--reranker", server.url, "--reranker-model", "orderer"], capsys)
        assert [c["id"] for c in listwise["kept"]] == retrieved[::-1]  # the server answered [4, 3, 2, 1]
        shown = server.requests[0]["messages"][-1]["content"]
        assert [r["model"] for r in server.requests] == ["orderer"]
        assert sum(p["type"] == "image_url" and p["image_url"]["url"].startswith("data:image/png;base64,") for p in shown) == 4


def test_score_cache_makes_the_same_question_free_across_runs(indexed, capsys, tmp_path):
    _, db = indexed
    cache = tmp_path / "scores.sqlite"
    with FakeOpenAI() as server:
        argv = ["query", "a red circle", "--tiny", "--db", db, "--modalities", "image", "--top-k", "4", "--json",
                "--rerank", "pointwise", "--reranker", server.url, "--reranker-model", "judge", "--score-cache", str(cache)]
        first = _json(argv, capsys)
        assert len(server.requests) == 4
        second = _json(argv, capsys)  # a new process would read the same file
        assert len(server.requests) == 4  # nothing scored again
        assert [c["metadata"]["rerank_score"] for c in second["kept"]] == [c["metadata"]["rerank_score"] for c in first["kept"]]
        _json([*argv[:1], "a blue square", *argv[2:]], capsys)
        assert len(server.requests) == 8  # another question is scored


# --------------------------------------------------------------------------- chat


def test_chat_streams_answers_lists_sources_and_takes_images(indexed, capsys, monkeypatch):
    folder, db = indexed
    monkeypatch.setenv("MMRAG_API_KEY", "sk-test-key")
    script = f"a red circle\n/image {folder / 'blue_square.png'}\nand this one?\n/quit\nnever read\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(script))
    with FakeOpenAI() as server:
        capsys.readouterr()
        assert main(["chat", "--tiny", "--db", db, "--modalities", "image", "--top-k", "3", "--rerank", "pointwise",
                     "--reranker", server.url, "--reranker-model", "judge", "--answer-model", server.url,
                     "--answer-model-name", "writer"]) == 0
    out = capsys.readouterr().out
    assert "answer model: writer at http://127.0.0.1" in out and "reranker: pointwise, judge at http://127.0.0.1" in out
    assert "(2 questions answered)" in out
    assert out.count("assistant> The red one is [1].") == 2
    assert out.count("*[1] image retrieval ") == 2 and "rerank 0.832" in out  # cited source starred, both scores
    assert "(image attached:" in out
    streamed = [r for r in server.requests if r.get("stream")]
    assert [r["model"] for r in streamed] == ["writer", "writer"]
    second = streamed[1]["messages"]
    assert {"role": "assistant", "content": "The red one is [1]."} in second  # the first exchange, for follow-ups
    images = [p for p in second[-1]["content"] if isinstance(p, dict) and p["type"] == "image_url"]
    assert len(images) == 4  # three sources and the attached question image
    assert all(h.get("authorization") == "Bearer sk-test-key" for h in server.headers)


def test_chat_with_the_tiny_models_answers_and_flags_them(indexed, capsys, monkeypatch):
    _, db = indexed
    monkeypatch.setattr(sys, "stdin", io.StringIO("a red circle\n"))
    capsys.readouterr()
    assert main(["chat", "--tiny", "--db", db, "--modalities", "image", "--top-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "answer model: tiny random-weight VLM" in out and "NOT meaningful" in out
    assert "assistant> " in out and "[1] image retrieval " in out and "(1 question answered)" in out


# --------------------------------------------------------------------------- serve


def test_serve_answers_over_http(indexed, tmp_path):
    _, db = indexed
    port = free_port()
    with FakeOpenAI() as server:
        command = [sys.executable, "-m", "mm_rag_components.cli", "serve", "--tiny", "--db", db, "--http-port", str(port),
                   "--answer-model", server.url, "--answer-model-name", "writer", "--modalities", "image",
                   "--allowed-host", "chat.example.org", "--max-question-chars", "50"]
        log = tmp_path / "serve.log"
        with open(log, "wb") as handle:
            process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        try:
            page = _wait_for_page(f"http://127.0.0.1:{port}/", process, log)
            assert "mm-rag chat" in page and page.count("NOT meaningful") == 1  # the tiny-model banner, once
            base = f"http://127.0.0.1:{port}"
            assert httpx.get(base + "/", headers={"Host": f"chat.example.org:{port}"}).status_code == 200
            assert httpx.get(base + "/", headers={"Host": f"rebound.example.net:{port}"}).json()["kind"] == "bad_host"
            assert httpx.post(base + "/api/ask", content=b'{"question": "x"}', headers={"Content-Type": "text/plain"}).status_code == 415
            assert httpx.post(base + "/api/ask", json={"question": "x" * 51}).status_code == 413
            with httpx.stream("POST", f"http://127.0.0.1:{port}/api/ask", json={"question": "a red circle"}, timeout=60) as reply:
                events = [json.loads(line) for line in reply.iter_lines() if line]
            assert [e["event"] for e in events] == ["turn", "token", "token", "token", "done"]
            assert events[-1]["turn"]["answer"]["text"] == "The red one is [1]." and events[-1]["turn"]["answer"]["cited"] == [1]
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert f"serving the chat on http://127.0.0.1:{port}/" in log.read_text()


def test_serve_with_two_workers_keeps_a_conversation_whichever_worker_answers(indexed, tmp_path):
    _, db = indexed
    port = free_port()
    sessions = tmp_path / "sessions.sqlite"
    with FakeOpenAI(answer=echo) as server:
        command = [sys.executable, "-m", "mm_rag_components.cli", "serve", "--tiny", "--db", db, "--http-port", str(port),
                   "--answer-model", server.url, "--answer-model-name", "writer", "--modalities", "image", "--workers", "2",
                   "--sessions", str(sessions), "--max-concurrent-questions", "3"]
        log = tmp_path / "serve.log"
        with open(log, "wb") as handle:
            process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        try:
            _wait_for_page(f"http://127.0.0.1:{port}/", process, log)
            session, workers = None, set()
            for number in range(4):  # a new connection each time: any worker may take it
                with httpx.stream("POST", f"http://127.0.0.1:{port}/api/ask", timeout=60,
                                  json={"question": f"a red circle q{number}", "session": session}) as reply:
                    events = [json.loads(line) for line in reply.iter_lines() if line]
                    workers.add(reply.headers["x-mm-rag-worker"])
                session = events[0]["session"]
                assert events[0]["exchange"] == number + 1
                assert events[-1]["turn"]["answer"]["text"] == f"Answer to <a red circle q{number}> [1]."
            health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=10).json()
        finally:
            process.terminate()
            process.wait(timeout=30)
    last = server.answered()[-1]
    assert [m["content"] for m in last["messages"][1:-1] if m["role"] == "user"] == [f"a red circle q{k}" for k in range(3)]
    assert health["capacity"] == 3 and health["mode"] == "concurrent" and str(health["worker"]) != str(process.pid)
    assert workers and all(w.isdigit() and w != str(process.pid) for w in workers)
    text = log.read_text()
    assert "with 2 worker processes" in text and f"sessions: {sessions}" in text


def test_serve_refuses_more_than_one_question_at_a_time_with_local_models(indexed, capsys):
    _, db = indexed
    capsys.readouterr()
    status = main(["serve", "--tiny", "--db", db, "--http-port", str(free_port()), "--max-concurrent-questions", "2",
                   "--answer-model", str(Path(db).parent / "models" / "tiny-idefics3")])
    assert status == 2 and "local models answer one question at a time" in _one_error_line(capsys.readouterr().err)


def test_a_session_file_that_cannot_be_opened_is_refused_before_any_model_loads(indexed, capsys, tmp_path):
    _, db = indexed
    (tmp_path / "afile").write_text("x")
    capsys.readouterr()
    status = main(["serve", "--tiny", "--db", db, "--http-port", str(free_port()), "--sessions", str(tmp_path / "afile" / "s.sqlite")])
    assert status == 2 and "cannot open the session store" in _one_error_line(capsys.readouterr().err)


def _wait_for_page(url: str, process: subprocess.Popen, log: Path, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mm-rag serve exited with {process.returncode}: {log.read_text()[-1500:]}")
        try:
            return httpx.get(url, timeout=2.0).text
        except httpx.HTTPError:
            time.sleep(0.3)
    pytest.fail(f"mm-rag serve did not answer within {timeout} s: {log.read_text()[-1500:]}")


# --------------------------------------------------------------------------- eval and parity


@pytest.mark.parametrize("command, bad, says", [
    ("eval", ["eval", "nowhere-dataset", "--out", "{tmp}/out"], "nowhere-dataset"),
    ("parity", ["parity", "--server", "http://127.0.0.1:9/v1"], "give --model LOCAL_DIR"),
])
def test_eval_and_parity_are_mm_rag_commands(command, bad, says, tmp_path, capsys):
    assert main([command, "--help"]) == 0
    assert f"usage: mm-rag {command}" in capsys.readouterr().out
    assert main([w.replace("{tmp}", str(tmp_path)) for w in bad]) == 2
    assert says in _one_error_line(capsys.readouterr().err)


def test_a_command_imports_only_its_own_module():
    code = ("import sys; from mm_rag_components.cli import main; main(['query', '--help']); "
            "print(sorted(m for m in ('mm_rag_components.cli.eval_commands', 'mm_rag_components.cli.parity_commands', 'mm_rag_components.cli.train_commands', "
            "'torch', 'chromadb') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1] == "[]", done.stderr


# --------------------------------------------------------------------------- bad input


@pytest.fixture()
def no_models(monkeypatch):
    """Bad input must be refused before any model is chosen, built or loaded."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was about to load for bad input")

    for module, name in ((store, "choose_model"), (models, "tiny_vlm"), (models, "pointwise_ranker"),
                         (models, "listwise_ranker"), (models, "answerer")):
        monkeypatch.setattr(module, name, refuse)


@pytest.fixture(scope="module")
def busy_port():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


BAD = [
    (["query", "x", "--rerank", "bogus"], "invalid choice: 'bogus'"),
    (["query", "x", "--reranker", "some/model"], "--reranker needs --rerank pointwise or --rerank listwise"),
    (["query", "x", "--reranker-model", "m"], "--reranker-model needs --rerank"),
    (["query", "x", "--rerank", "pointwise", "--reranker", "http://[::1/v1", "--reranker-model", "m"], "not a valid URL"),
    (["query", "x", "--rerank", "pointwise", "--reranker", "http:///v1", "--reranker-model", "m"], "not a valid server URL"),
    (["query", "x", "--rerank", "listwise", "--reranker", "ftp://host/v1", "--reranker-model", "m"], "not a valid server URL"),
    (["query", "x", "--rerank", "pointwise", "--reranker", "http://127.0.0.1:1/v1"], "give --reranker-model NAME"),
    (["query", "x", "--rerank", "pointwise", "--reranker", "{tmp}/missing-model/"], "no such directory"),
    (["query", "x", "--rerank", "pointwise", "--reranker", "{tmp}/afile"], "is a file, not a model directory"),
    (["query", "x", "--rerank", "pointwise", "--reranker", "org/not-cached-model"], "is not cached"),
    (["query", "x", "--rerank", "pointwise", "--reranker", "   "], "must not be empty"),
    (["query", "x", "--rerank", "pointwise", "--reranker", "./m", "--reranker-model", "m"], "applies only when --reranker is a server URL"),
    (["query", "x", "--filter", "treshold=0.5"], "unknown filter setting 'treshold'"),
    (["query", "x", "--filter", "threshold"], "expected KEY=VALUE"),
    (["query", "x", "--filter", "max_k=two"], "max_k needs an integer"),
    (["query", "x", "--filter", "top_p=2"], "top_p"),
    (["query", "x", "--filter", "threshold=nan"], "threshold"),
    (["query", "x", "--filter", "max_k=1", "--filter", "max_k=2"], "--filter sets max_k twice"),
    (["query", "x", "--rerank", "listwise", "--window", "1"], "--window"),
    (["query", "x", "--rerank", "pointwise", "--timeout", "0"], "--timeout"),
    (["query", "x", "--rerank", "pointwise", "--timeout", "nan"], "--timeout"),
    (["query", "x", "--rerank", "pointwise", "--max-new-tokens", "0"], "--max-new-tokens"),
    (["chat", "--answer-model", "{tmp}/missing-model"], "no such directory"),
    (["chat", "--answer-model-name", "writer"], "give --answer-model URL too"),
    (["chat", "--answer-model", "https://"], "not a valid server URL"),
    (["chat", "--history", "0"], "--history"),
    (["chat", "--text-only-server", "--answer-model", "{tmp}"], "--text-only-server applies to a model named by a server URL"),
    (["chat"], "no Chroma database at"),
    (["serve", "--http-port", "70000"], "--http-port"),
    (["serve", "--http-port", "{busy}"], "cannot listen on 127.0.0.1:"),
    (["serve", "--answer-model", "http://x:99999/v1", "--answer-model-name", "m", "--http-port", "{free}"], "not a valid URL"),
    (["serve", "--max-concurrent-questions", "4", "--http-port", "{free}"], "--max-concurrent-questions needs the reranker and the answer model on servers"),
    (["serve", "--max-concurrent-questions", "0"], "--max-concurrent-questions"),
    (["serve", "--queue", "-1"], "--queue"),
    (["serve", "--workers", "0"], "--workers"),
    (["serve", "--workers", "65"], "--workers"),
    (["serve", "--max-sessions", "0"], "--max-sessions"),
    (["serve", "--session-ttl", "0"], "--session-ttl"),
    (["serve", "--session-ttl", "inf"], "--session-ttl"),
    (["eval", "--top-n", "0", "--tiny", "--out", "{tmp}/out"], "--depth must be >= 1"),  # --top-n: the former name
    (["parity", "--pairs", "{tmp}/afile", "--model", "m"], "expected {"),
]


@pytest.mark.parametrize("argv, says", BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_input_is_one_line_with_exit_status_2(argv, says, tmp_path, capsys, no_models, busy_port):
    (tmp_path / "afile").write_text("not a model")
    words = [w.replace("{tmp}", str(tmp_path)).replace("{busy}", str(busy_port)).replace("{free}", str(free_port())) for w in argv]
    if words[0] not in ("eval", "parity"):
        words += ["--db", str(tmp_path / "no-db" / "chroma")]
    assert main(words) == 2
    out, err = capsys.readouterr()
    assert out == "" and says in _one_error_line(err)
    assert not (tmp_path / "no-db").exists()  # refused before anything was created


def test_every_command_is_wired_and_documented():
    from mm_rag_components.cli import COMMANDS

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert list(sub.choices) == [c.name for c in COMMANDS]
    assert {"ingest", "query", "demo", "chat", "serve", "eval", "parity"} <= set(sub.choices)
    for name in ("chat", "serve"):
        options = {o for a in sub.choices[name]._actions for o in a.option_strings}
        assert {"--rerank", "--reranker", "--reranker-model", "--answer-model", "--filter", "--db", "--tiny"} <= options
    assert "--http-port" in {o for a in sub.choices["serve"]._actions for o in a.option_strings}


def test_a_score_cache_that_cannot_be_opened_is_one_line_and_exit_2(indexed, capsys, tmp_path):
    _, db = indexed
    capsys.readouterr()
    status = main(["query", "a red circle", "--tiny", "--db", db, "--rerank", "pointwise", "--score-cache", str(tmp_path)])
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert "cannot open the score cache" in _one_error_line(err)
