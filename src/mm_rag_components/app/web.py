"""The web chat: one small server-rendered page over the QA pipeline (Starlette + uvicorn).

Why not a UI framework: the page is one HTML file with a little plain JavaScript — no CDN, no
fonts or analytics fetched from the internet, nothing to build — so it works offline, on a
loopback-only machine, and its behaviour is easy to test end to end in a real browser.

Routes:

* ``GET /`` — the page: a question box, an optional image upload, the streamed answer (a safe
  subset of Markdown, citations linked to their sources), the kept sources (thumbnails, document
  pages, retrieval and rerank scores) and what the filter dropped, with reasons;
* ``POST /api/ask`` — JSON ``{"question", "image" (a data: URI), "session"}`` → newline-delimited
  JSON events: ``queued`` (place in line, while waiting), ``turn`` (session, exchange number,
  sources, drops), ``token`` (answer text), then ``done`` (answer, citations) or ``error``
  (``kind`` and ``message``; an answer the model failed to give ends in an ``error`` too). Bad
  input is a 400 (413 when too large) and a full server a 503 with ``Retry-After``, all
  ``{"error", "kind"}`` before anything streams. Each source with an image carries ``media``,
  the URL of its image;
* ``POST /api/reset`` — forget a live session's history (an unknown session: nothing happens);
* ``GET /api/health`` — this worker's load: ``{"status", "worker", "mode", "capacity", "queue",
  "running", "waiting", "sessions"}``;
* ``GET /media/{token}`` — an image the chat has shown (or the image of a record of the index, by
  its id), only while it is the very file that was ingested (:func:`~.guards.verified_image`).

Many users: with a pipeline whose reranker and answerer are servers (:attr:`QAPipeline.remote`),
questions run concurrently on the event loop, at most ``max_concurrent_questions`` at once; with
a local model one question runs at a time in a worker thread. Either way up to ``queue`` more
wait in line (:mod:`~mm_rag_components.app.admission`) and anyone beyond is answered 503 at once.
A user who leaves stops their question: their place is freed at once, and a local model does no
more work for them once its current step ends. Conversations live in a
:class:`~mm_rag_components.app.sessions.SessionStore` (a SQLite file lets several workers share
them), bounded per client address. Questions (``max_question_chars``), the history sent to the
model (``max_history_chars``) and uploads (``max_upload_bytes``) are bounded, and uploads are
decoded with the same checks as every image. What every request and reply goes through (Host and
Origin checks, security headers): :mod:`~mm_rag_components.app.guards`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

from ..answer import Exchange, threaded
from ..errors import BackendError, ConfigError, MediaError, MMRagError, ModelError, StoreError, one_line
from ..media import DEFAULT_MAX_PIXELS, load_image
from ..types import IMAGE_PATH, MODALITY, SHA256, Query
from ..validate import integer, positive_int
from .admission import Admission, Busy, Ticket
from .guards import MEDIA_CSP, TooLarge, WebGuard, check_allowed_hosts, page_csp, parse_json_object, verified_image
from .pipeline import QAPipeline, QATurn
from .sessions import SessionStore

logger = logging.getLogger(__name__)

#: Largest accepted request body (the image travels base64-encoded inside it).
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
#: Longest question, and most characters of earlier exchanges sent to the model with a question.
DEFAULT_MAX_QUESTION_CHARS = 4000
DEFAULT_MAX_HISTORY_CHARS = 16_000
#: Questions running at once on servers, and waiting in line before a 503 (local models: 1 and 8).
DEFAULT_MAX_CONCURRENT_QUESTIONS = 8
DEFAULT_QUEUE = {True: 0, False: 8}
PAGE = Path(__file__).with_name("page.html")
#: Answer flags that mean the model gave no (complete) answer: the stream ends in an error event.
FAILED_ANSWER = {"generator_error": "answer_failed", "timeout": "answer_timeout"}
_KINDS = ((Busy, "busy"), (TooLarge, "too_large"), (ConfigError, "bad_request"), (MediaError, "media"), (StoreError, "store"),
          (ModelError, "model"), (BackendError, "backend"))
#: How often a local question waiting for the model checks whether its user is still there (s).
_LOCK_POLL = 0.05


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
        raise TooLarge(f"the image is larger than {max_bytes:,} bytes")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError("the image is not valid base64") from exc
    return load_image(raw, max_pixels=max_pixels)


def bounded_history(history: list[Exchange], max_chars: int) -> list[Exchange]:
    """The most recent exchanges whose questions and answers fit in ``max_chars`` characters
    (older ones are left out; an answer too long to fit even alone is cut, marked with "…")."""
    kept: list[Exchange] = []
    room = max_chars
    for exchange in reversed(history):
        size = len(exchange.question) + len(exchange.answer)
        if size > room:
            if not kept and len(exchange.question) < room:
                kept.append(Exchange(exchange.question, exchange.answer[: room - len(exchange.question) - 1] + "…"))
            break
        kept.append(exchange)
        room -= size
    return kept[::-1]


def _line(event: str, **data: Any) -> bytes:
    return (json.dumps({"event": event, **data}) + "\n").encode()


class ChatService:
    """What the routes do, without HTTP: admit a question, run it, stream its events.

    ``concurrent`` (default: :attr:`QAPipeline.remote`) runs questions concurrently on the event
    loop; otherwise one at a time in a worker thread, a lock making sure a question abandoned by
    its user has finished with the model before the next one starts (and an abandoned question
    does no further step). ``max_history_chars`` bounds the earlier exchanges sent to the model.
    """

    def __init__(
        self,
        pipeline: QAPipeline,
        *,
        sessions: SessionStore | None = None,
        max_concurrent_questions: int | None = None,
        queue: int | None = None,
        concurrent: bool | None = None,
        max_history_chars: int = DEFAULT_MAX_HISTORY_CHARS,
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
        self.max_history_chars = positive_int("max_history_chars", max_history_chars)
        self._model_lock = threading.Lock()

    def status(self) -> dict[str, Any]:
        return {"status": "ok", "worker": os.getpid(), "mode": "concurrent" if self.concurrent else "one at a time",
                **self.admission.status(), "sessions": len(self.sessions)}

    def admit(self) -> Ticket:
        """A place for one question, or :class:`Busy`."""
        return self.admission.enter()

    async def events(self, ticket: Ticket, session: object, query: Query, client: str = "") -> AsyncIterator[bytes]:
        """The question's events (module docstring); the ticket is released however it ends
        (``client``: the asker's address, to which a new session is counted)."""
        try:
            session = await asyncio.to_thread(self.sessions.open, session, client)
            async for position in ticket.wait():
                yield _line("queued", session=session, position=position)
            history = await asyncio.to_thread(self.sessions.history, session)
            turn: QATurn | None = None
            async with aclosing(self._run(query, bounded_history(history, self.max_history_chars))) as steps:
                async for step in steps:  # the turn (sources), then the answer's pieces
                    if isinstance(step, QATurn):
                        turn = step
                        yield _line("turn", session=session, exchange=len(history) + 1, turn=await self._shown(turn))
                    else:
                        yield _line("token", text=step)
            if turn is None:  # _run yields the turn first or raises: never silent if that breaks
                raise RuntimeError("the question ended without a turn")
            yield await self._finish(session, turn, client)
        except MMRagError as exc:
            yield _line("error", kind=error_kind(exc), message=one_line(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the server; the user sees one line
            logger.exception("question failed")
            yield _line("error", kind="internal", message=one_line(exc))
        finally:
            ticket.release()

    async def _shown(self, turn: QATurn) -> dict[str, Any]:
        """``turn.to_dict()`` with the ``/media`` URL of each source's image file (``media``)."""
        data = turn.to_dict()

        def remember() -> None:
            for source in (*data["kept"], *data["dropped"]):
                path, digest = source.get("image_path"), source["metadata"].get(SHA256)
                shown = isinstance(path, str) and isinstance(digest, str) and "://" not in path
                source["media"] = f"/media/{self.sessions.remember_media(path, digest)}" if shown else None

        await asyncio.to_thread(remember)
        return data

    async def _finish(self, session: str, turn: QATurn, client: str) -> bytes:
        answer = turn.answer
        if answer is not None and answer.flag in FAILED_ANSWER:
            return _line("error", kind=FAILED_ANSWER[answer.flag], message=f"no answer: {answer.error}", turn=await self._shown(turn))
        if answer is not None and answer.flag is None:
            question = turn.question.text or "(an image)"
            await asyncio.to_thread(self.sessions.append, session, Exchange(question, answer.text), client)
        return _line("done", turn=await self._shown(turn))

    def _run(self, query: Query, history: list[Exchange]) -> AsyncIterator[QATurn | str]:
        """The question's turn (once retrieved, reranked and filtered), then its answer's pieces."""
        return self._run_concurrently(query, history) if self.concurrent else self._run_in_thread(query, history)

    async def _run_concurrently(self, query: Query, history: list[Exchange]) -> AsyncIterator[QATurn | str]:
        turn, pieces = await self.pipeline.aask_stream(query, history)
        yield turn
        async for piece in pieces:
            yield piece

    async def _run_in_thread(self, query: Query, history: list[Exchange]) -> AsyncIterator[QATurn | str]:
        left = threading.Event()  # set when the user has gone (or the question ended)
        try:
            async with aclosing(threaded(self._run_locally(query, history, left))) as steps:
                async for step in steps:
                    yield step
        finally:
            left.set()

    def _run_locally(self, query: Query, history: list[Exchange], left: threading.Event) -> Iterator[QATurn | str]:
        """In the worker thread: wait for the model (unless the user leaves first), search, and
        ask for the answer only if the user is still there."""
        while not self._model_lock.acquire(timeout=_LOCK_POLL):
            if left.is_set():
                return
        try:
            if left.is_set():
                return
            turn = self.pipeline.search(query)
            if left.is_set():
                return
            yield turn
            yield from self.pipeline.answer_stream(turn, history)
        finally:
            self._model_lock.release()


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
    max_question_chars: int = DEFAULT_MAX_QUESTION_CHARS,
    max_history_chars: int = DEFAULT_MAX_HISTORY_CHARS,
    allowed_hosts: Iterable[str] | None = None,
) -> Any:
    """The Starlette application (serve it with uvicorn; see :func:`serve`). ``sessions``,
    ``max_concurrent_questions``, ``queue``, ``concurrent`` and ``max_history_chars``: see
    :class:`ChatService`. ``allowed_hosts``: host names the server answers to besides IP
    addresses and ``localhost`` (``["*"]``: any; see :mod:`~mm_rag_components.app.guards`)."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    positive_int("max_upload_bytes", max_upload_bytes)
    positive_int("max_question_chars", max_question_chars)
    hosts = check_allowed_hosts(allowed_hosts)
    service = ChatService(pipeline, sessions=sessions, max_concurrent_questions=max_concurrent_questions, queue=queue,
                          concurrent=concurrent, max_history_chars=max_history_chars)
    page = PAGE.read_text(encoding="utf-8").replace("{{title}}", _html(title)).replace("{{note}}", _html(note))
    worker = {"x-mm-rag-worker": str(os.getpid())}
    max_body = max_upload_bytes * 4 // 3 + 65_536

    def refuse(exc: MMRagError, status: int, **headers: str) -> Response:
        return JSONResponse({"error": one_line(exc) if status >= 500 else str(exc), "kind": error_kind(exc)},
                            status_code=status, headers={**worker, **headers})

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    async def read_json(request: Request) -> dict[str, Any]:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body):
            raise TooLarge(f"the request is larger than the upload limit of {max_upload_bytes:,} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body:
                raise TooLarge(f"the request is larger than the upload limit of {max_upload_bytes:,} bytes")
        return await asyncio.to_thread(parse_json_object, bytes(body))

    async def question_of(data: dict[str, Any]) -> Query:
        question = data.get("question") or None
        if question is not None and not isinstance(question, str):
            raise ConfigError("question must be text")
        if question is not None and len(question) > max_question_chars:
            raise TooLarge(f"the question is {len(question):,} characters long; at most {max_question_chars:,} are accepted")
        image = await asyncio.to_thread(decode_upload, data["image"], max_bytes=max_upload_bytes) if data.get("image") else None
        return Query(text=question, image=image)

    async def ask(request: Request) -> Response:
        try:
            data = await read_json(request)
            query = await question_of(data)
        except MMRagError as exc:
            return refuse(exc, 413 if isinstance(exc, TooLarge) else 400)
        try:
            ticket = service.admit()
        except Busy as exc:
            return refuse(exc, 503, **{"Retry-After": str(exc.retry_after)})
        client = request.client.host if request.client else ""
        return StreamingResponse(service.events(ticket, data.get("session"), query, client), media_type="application/x-ndjson",
                                 headers=worker)

    async def reset(request: Request) -> Response:
        try:
            data = await read_json(request)
        except MMRagError as exc:
            return refuse(exc, 413 if isinstance(exc, TooLarge) else 400)
        session = data.get("session")
        known = await asyncio.to_thread(service.sessions.reset, session)
        return JSONResponse({"session": session if known else None}, headers=worker)

    async def health(request: Request) -> Response:
        return JSONResponse(service.status(), headers=worker)

    def image_file(key: str) -> tuple[bytes, str]:
        shown = service.sessions.media(key)
        if shown is None:  # not a token: the id of an image record of the index
            hits = pipeline.index.image_store.get(ids=[key])
            meta = hits[0].metadata if hits and hits[0].metadata.get(MODALITY, "image") == "image" else {}
            shown = (meta.get(IMAGE_PATH) or meta.get("source"), meta.get(SHA256))  # a document page: its image file
        return verified_image(*shown)

    async def media(request: Request) -> Response:
        key = request.path_params["key"]
        try:
            data, kind = await asyncio.to_thread(image_file, key)
        except MMRagError as exc:
            logger.info("/media/%.80s refused: %s", key, one_line(exc))
            return JSONResponse({"error": "no such image"}, status_code=404, headers=worker)
        return Response(data, media_type=kind, headers={**worker, "cache-control": "private, max-age=3600"})

    guard = Middleware(WebGuard, allowed_hosts=hosts, policies={"/": page_csp(page), "/media/": MEDIA_CSP})
    app = Starlette(middleware=[guard], routes=[
        Route("/", index),
        Route("/api/ask", ask, methods=["POST"]),
        Route("/api/reset", reset, methods=["POST"]),
        Route("/api/health", health),
        Route("/media/{key}", media),
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


__all__ = ["DEFAULT_MAX_CONCURRENT_QUESTIONS", "DEFAULT_MAX_HISTORY_CHARS", "DEFAULT_MAX_QUESTION_CHARS", "DEFAULT_MAX_UPLOAD_BYTES",
           "ChatService", "bounded_history", "create_app", "decode_upload", "error_kind", "serve"]
