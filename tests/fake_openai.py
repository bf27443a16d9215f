"""A fake OpenAI-compatible model server on 127.0.0.1 for the QA app's tests.

* pointwise requests (``logprobs``) get a yes/no answer;
* ``stream: true`` requests get ``answer(body)`` as server-sent events, one piece per word, with
  ``delay`` seconds between pieces; while ``gate`` is clear, streams wait before their first piece;
* other requests get ``ranking`` as one answer (listwise).

It counts the streams in flight (``max_streams``) and can close a stream after its first piece
(``break_streams``), as a server killed mid-answer does.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from remote_support import chat_reply

ANSWER = ("The red one ", "is ", "[1].")


def question_of(body: dict[str, Any]) -> str:
    """The question text of an answer request (the line after "Question:" in the last user turn)."""
    content = body["messages"][-1]["content"]
    text = content if isinstance(content, str) else "\n".join(p.get("text", "") for p in content if p.get("type") == "text")
    found = re.search(r"Question:\s*\n?(.*)", text)
    return found.group(1).strip() if found else ""


def echo(body: dict[str, Any]) -> list[str]:
    """An answer naming the question it answers (so tests can tell answers apart)."""
    return ["Answer ", "to ", f"<{question_of(body)}> ", "[1]."]


class FakeOpenAI:
    """See the module docstring; use as a context manager (``url`` is the ``…/v1`` base URL)."""

    def __init__(
        self,
        ranking: str = '{"ranking": [4, 3, 2, 1]}',
        *,
        answer: Callable[[dict[str, Any]], list[str]] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.answer = answer or (lambda body: list(ANSWER))
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()
        self.break_streams = False
        self.streams = 0
        self.max_streams = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # the body ends when the connection closes (streams too)

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with server._lock:
                    server.requests.append(body)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                if body.get("stream"):
                    server._stream(self, body)
                    return
                reply = chat_reply({"yes": -0.2, "no": -1.8}) if body.get("logprobs") else {
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": ranking}}]}
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def _stream(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        with self._lock:
            self.streams += 1
            self.max_streams = max(self.max_streams, self.streams)
        try:
            self.gate.wait(30)
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream")
            handler.end_headers()
            for number, piece in enumerate(self.answer(body)):
                if number:
                    self.gate.wait(30)
                    threading.Event().wait(self.delay)
                event = {"choices": [{"index": 0, "delta": {"content": piece}}]}
                handler.wfile.write(f": keep-alive\n\ndata: {json.dumps(event)}\n\n".encode())
                handler.wfile.flush()
                if self.break_streams:  # the server dies: the connection closes mid-answer
                    handler.connection.shutdown(2)
                    return
            handler.wfile.write(b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client left
        finally:
            with self._lock:
                self.streams -= 1

    def answered(self) -> list[dict[str, Any]]:
        """The answer (streamed) requests so far."""
        with self._lock:
            return [r for r in self.requests if r.get("stream")]

    def __enter__(self) -> FakeOpenAI:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()
