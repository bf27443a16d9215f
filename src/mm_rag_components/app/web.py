"""The web chat: one small server-rendered page over the QA pipeline (Starlette + uvicorn).

Why not a UI framework: the page is one HTML file with a little plain JavaScript — no CDN, no
fonts or analytics fetched from the internet, nothing to build — so it works offline, on a
loopback-only machine, and its behaviour is easy to test end to end in a real browser.

Routes:

* ``GET /`` — the page: a question box, an optional image upload, the streamed answer, the kept
  sources (thumbnails, retrieval and rerank scores) and what the filter dropped, with reasons;
* ``POST /api/ask`` — JSON ``{"question", "image" (a data: URI), "session"}`` → newline-delimited
  JSON events: ``queued`` (place in line, while waiting), ``turn`` (session, exchange number,
  sources, drops), ``token`` (answer text), then ``done`` (answer, citations) or ``error``
  (``kind`` and ``message``; an answer the model failed to give ends in an ``error`` too). Bad
  input is a 400 and a full server a 503 with ``Retry-After``, both ``{"error", "kind"}`` before
  anything streams;
* ``POST /api/reset`` — forget a session's history;
* ``GET /api/health`` — this worker's load: ``{"status", "worker", "mode", "capacity", "queue",
  "running", "waiting", "sessions"}``;
* ``GET /media/{record_id}`` — the image of a record of the index (never an arbitrary path).

Many users: with a pipeline whose reranker and answerer are servers (:attr:`QAPipeline.remote`),
questions run concurrently on the event loop, at most ``max_concurrent_questions`` at once; with
a local model one question runs at a time in a worker thread. Either way up to ``queue`` more
wait in line (:mod:`~mm_rag_components.app.admission`) and anyone beyond is answered 503 at once.
Conversations live in a :class:`~mm_rag_components.app.sessions.SessionStore` (a SQLite file
lets several workers share them). Uploads are size-limited (``max_upload_bytes``) and decoded
with the same checks as every image.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

from ..answer import Exchange, threaded
from ..errors import BackendError, ConfigError, MediaError, MMRagError, ModelError, StoreError, one_line
from ..media import DEFAULT_MAX_PIXELS, load_image
from ..types import Query
from ..validate import integer, positive_int
from .admission import Admission, Busy, Ticket
from .pipeline import QAPipeline, QATurn
from .sessions import SessionStore

logger = logging.getLogger(__name__)

#: Largest accepted request body (the image travels base64-encoded inside it).
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
#: Questions running at once on servers, and waiting in line before a 503 (local models: 1 and 8).
DEFAULT_MAX_CONCURRENT_QUESTIONS = 8
DEFAULT_QUEUE = {True: 0, False: 8}
PAGE = Path(__file__).with_name("page.html")
#: Answer flags that mean the model gave no (complete) answer: the stream ends in an error event.
FAILED_ANSWER = {"generator_error": "answer_failed", "timeout": "answer_timeout"}
_KINDS = ((Busy, "busy"), (ConfigError, "bad_request"), (MediaError, "media"), (StoreError, "store"),
          (ModelError, "model"), (BackendError, "backend"))


def error_kind(exc: BaseException) -> str:
    """A short, stable name for what went wrong (clients count errors by it)."""
    return next((kind for cls, kind in _KINDS if isinstance(exc, cls)), "error" if isinstance(exc, MMRagError) else "internal")


def decode_upload(data_uri: object, *, max_bytes: int, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Any:
    """A PIL image from a ``data:image/...;base64,...`` upload, or a :class:`ConfigError` /
    :class:`~mm_rag_components.errors.MediaError` saying what is wrong."""
    if not isinstance(data_uri, str) or not data_uri.startswith("data:") or ";base64," not in data_uri[:100]:
        raise ConfigError("the image must be a base64 data: URI")
    payload = data_uri.split(",", 1)[1]
    if len(payload) * 3 // 4 > max_bytes:
        raise ConfigError(f"the image is larger than {max_bytes:,} bytes")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError("the image is not valid base64") from exc
    return load_image(raw, max_pixels=max_pixels)


def _line(event: str, **data: Any) -> bytes:
    return (json.dumps({"event": event, **data}) + "\n").encode()


class ChatService:
    """What the routes do, without HTTP: admit a question, run it, stream its events.

    ``concurrent`` (default: :attr:`QAPipeline.remote`) runs questions concurrently on the event
    loop; otherwise one at a time in a worker thread, a lock making sure a question abandoned by
    its user has finished with the model before the next one starts.
    """

    def __init__(
        self,
        pipeline: QAPipeline,
        *,
        sessions: SessionStore | None = None,
        max_concurrent_questions: int | None = None,
        queue: int | None = None,
        concurrent: bool | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.concurrent = pipeline.remote if concurrent is None else bool(concurrent)
        if not self.concurrent and max_concurrent_questions not in (None, 1):
            raise ConfigError(
                "local models answer one question at a time: max_concurrent_questions applies when the reranker and the "
                "answer model are servers (let more users wait with queue=N)"
            )
        capacity = positive_int("max_concurrent_questions", max_concurrent_questions, optional=True)
        capacity = (capacity or DEFAULT_MAX_CONCURRENT_QUESTIONS) if self.concurrent else 1
        queue = DEFAULT_QUEUE[self.concurrent] if queue is None else integer("queue", queue, minimum=0)
        self.admission = Admission(capacity, queue)
        self.sessions = sessions if sessions is not None else SessionStore()
        self._model_lock = threading.Lock()

    def status(self) -> dict[str, Any]:
        return {"status": "ok", "worker": os.getpid(), "mode": "concurrent" if self.concurrent else "one at a time",
                **self.admission.status(), "sessions": len(self.sessions)}

    def admit(self) -> Ticket:
        """A place for one question, or :class:`Busy`."""
        return self.admission.enter()

    async def events(self, ticket: Ticket, session: str | None, query: Query) -> AsyncIterator[bytes]:
        """The question's events (module docstring); the ticket is released however it ends."""
        try:
            session = await asyncio.to_thread(self.sessions.open, session)
            async for position in ticket.wait():
                yield _line("queued", session=session, position=position)
            history = await asyncio.to_thread(self.sessions.history, session)
            turn: QATurn | None = None
            async with aclosing(self._run(query, history)) as steps:
                async for step in steps:  # the turn (sources), then the answer's pieces
                    if isinstance(step, QATurn):
                        turn = step
                        yield _line("turn", session=session, exchange=len(history) + 1, turn=turn.to_dict())
                    else:
                        yield _line("token", text=step)
            if turn is None:  # _run yields the turn first or raises: never silent if that breaks
                raise RuntimeError("the question ended without a turn")
            yield await self._finish(session, turn)
        except MMRagError as exc:
            yield _line("error", kind=error_kind(exc), message=one_line(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the server; the user sees one line
            logger.exception("question failed")
            yield _line("error", kind="internal", message=one_line(exc))
        finally:
            ticket.release()

    async def _finish(self, session: str, turn: QATurn) -> bytes:
        answer = turn.answer
        if answer is not None and answer.flag in FAILED_ANSWER:
            return _line("error", kind=FAILED_ANSWER[answer.flag], message=f"no answer: {answer.error}", turn=turn.to_dict())
        if answer is not None and answer.flag is None:
            question = turn.question.text or "(an image)"
            await asyncio.to_thread(self.sessions.append, session, Exchange(question, answer.text))
        return _line("done", turn=turn.to_dict())

    def _run(self, query: Query, history: list[Exchange]) -> AsyncIterator[QATurn | str]:
        """The question's turn (once retrieved, reranked and filtered), then its answer's pieces."""
        return self._run_concurrently(query, history) if self.concurrent else threaded(self._run_locally(query, history))

    async def _run_concurrently(self, query: Query, history: list[Exchange]) -> AsyncIterator[QATurn | str]:
        turn, pieces = await self.pipeline.aask_stream(query, history)
        yield turn
        async for piece in pieces:
            yield piece

    def _run_locally(self, query: Query, history: list[Exchange]) -> Iterator[QATurn | str]:
        with self._model_lock:
            turn, pieces = self.pipeline.ask_stream(query, history)
            yield turn
            yield from pieces


def create_app(
    pipeline: QAPipeline,
    *,
    title: str = "mm-rag chat",
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    note: str = "",
    sessions: SessionStore | None = None,
    max_concurrent_questions: int | None = None,
    queue: int | None = None,
    concurrent: bool | None = None,
) -> Any:
    """The Starlette application (serve it with uvicorn; see :func:`serve`). ``sessions``,
    ``max_concurrent_questions``, ``queue`` and ``concurrent``: see :class:`ChatService`."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    positive_int("max_upload_bytes", max_upload_bytes)
    service = ChatService(pipeline, sessions=sessions, max_concurrent_questions=max_concurrent_questions, queue=queue,
                          concurrent=concurrent)
    page = PAGE.read_text(encoding="utf-8").replace("{{title}}", _html(title)).replace("{{note}}", _html(note))
    worker = {"x-mm-rag-worker": str(os.getpid())}

    def refuse(exc: MMRagError, status: int, **headers: str) -> Response:
        return JSONResponse({"error": one_line(exc) if status >= 500 else str(exc), "kind": error_kind(exc)},
                            status_code=status, headers={**worker, **headers})

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    async def read_json(request: Request) -> dict[str, Any]:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_upload_bytes * 4 // 3 + 65_536):
            raise ConfigError(f"the request is larger than the upload limit of {max_upload_bytes:,} bytes")
        body = await request.body()
        if len(body) > max_upload_bytes * 4 // 3 + 65_536:
            raise ConfigError(f"the request is larger than the upload limit of {max_upload_bytes:,} bytes")
        try:
            data = json.loads(body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError("the request body must be JSON") from exc
        if not isinstance(data, dict):
            raise ConfigError("the request body must be a JSON object")
        return data

    async def question_of(data: dict[str, Any]) -> Query:
        question = data.get("question") or None
        if question is not None and not isinstance(question, str):
            raise ConfigError("question must be text")
        image = await asyncio.to_thread(decode_upload, data["image"], max_bytes=max_upload_bytes) if data.get("image") else None
        return Query(text=question, image=image)

    async def ask(request: Request) -> Response:
        try:
            data = await read_json(request)
            query = await question_of(data)
        except MMRagError as exc:
            return refuse(exc, 400)
        try:
            ticket = service.admit()
        except Busy as exc:
            return refuse(exc, 503, **{"Retry-After": str(exc.retry_after)})
        return StreamingResponse(service.events(ticket, data.get("session"), query), media_type="application/x-ndjson",
                                 headers=worker)

    async def reset(request: Request) -> Response:
        try:
            data = await read_json(request)
        except MMRagError as exc:
            return refuse(exc, 400)
        session = await asyncio.to_thread(service.sessions.open, data.get("session"))
        await asyncio.to_thread(service.sessions.reset, session)
        return JSONResponse({"session": session}, headers=worker)

    async def health(request: Request) -> Response:
        return JSONResponse(service.status(), headers=worker)

    async def media(request: Request) -> Response:
        record = request.path_params["record_id"]
        try:
            hits = await asyncio.to_thread(pipeline.index.image_store.get, ids=[record])
        except MMRagError as exc:
            return JSONResponse({"error": one_line(exc)}, status_code=404)
        source = (hits[0].metadata.get("image_path") or hits[0].metadata.get("source")) if hits else None  # a page: its image
        if not isinstance(source, str) or not Path(source).is_file():
            return JSONResponse({"error": "no such image"}, status_code=404)
        return FileResponse(source)

    app = Starlette(routes=[
        Route("/", index),
        Route("/api/ask", ask, methods=["POST"]),
        Route("/api/reset", reset, methods=["POST"]),
        Route("/api/health", health),
        Route("/media/{record_id}", media),
    ])
    app.state.service = service
    return app


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def serve(
    pipeline: QAPipeline, *, host: str = "127.0.0.1", port: int = 8765, on_ready: Callable[[str], None] | None = None, **app_options: Any
) -> None:
    """Serve the chat page with uvicorn on ``host:port`` (loopback by default) until stopped."""
    import uvicorn

    app = create_app(pipeline, **app_options)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    if on_ready is not None:
        on_ready(f"http://{host}:{port}/")
    server.run()


__all__ = ["DEFAULT_MAX_CONCURRENT_QUESTIONS", "DEFAULT_MAX_UPLOAD_BYTES", "ChatService", "create_app", "decode_upload", "error_kind", "serve"]
