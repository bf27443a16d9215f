"""The web chat: one small server-rendered page over the QA pipeline (Starlette + uvicorn).

Why not a UI framework: the page is one HTML file with a little plain JavaScript — no CDN, no
fonts or analytics fetched from the internet, nothing to build — so it works offline, on a
loopback-only machine, and its behaviour is easy to test end to end in a real browser.

Routes:

* ``GET /`` — the page: a question box, an optional image upload, the streamed answer, the kept
  sources (thumbnails, retrieval and rerank scores) and what the filter dropped, with reasons;
* ``POST /api/ask`` — JSON ``{"question", "image" (a data: URI), "session"}`` → newline-delimited
  JSON events: ``turn`` (sources, drops), ``token`` (answer text), ``done`` (answer, citations) or
  ``error``; bad input is a 400 with ``{"error": ...}`` before anything streams;
* ``POST /api/reset`` — forget a session's history;
* ``GET /media/{record_id}`` — the image of a record of the index (never an arbitrary path).

Uploads are size-limited (``max_upload_bytes``) and decoded with the same checks as every image.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MMRagError, ModelError, one_line
from ..media import DEFAULT_MAX_PIXELS, load_image
from ..validate import positive_int
from .pipeline import Conversation, QAPipeline, QATurn

#: Largest accepted request body (the image travels base64-encoded inside it).
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
PAGE = Path(__file__).with_name("page.html")


class Sessions:
    """Conversations by session id, at most ``limit`` (least recently used dropped first)."""

    def __init__(self, pipeline: QAPipeline, limit: int = 100) -> None:
        self.pipeline = pipeline
        self.limit = limit
        self._items: OrderedDict[str, Conversation] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session: str | None) -> tuple[str, Conversation]:
        with self._lock:
            key = session if session in self._items else uuid.uuid4().hex
            conversation = self._items.pop(key, None) or Conversation(self.pipeline)
            self._items[key] = conversation
            while len(self._items) > self.limit:
                self._items.popitem(last=False)
            return key, conversation


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


def _events(turn: QATurn, pieces: Iterator[str], session: str, lock: threading.Lock) -> Iterator[bytes]:
    def line(event: str, **data: Any) -> bytes:
        return (json.dumps({"event": event, **data}) + "\n").encode()

    try:
        yield line("turn", session=session, turn=turn.to_dict())
        for piece in pieces:
            yield line("token", text=piece)
        yield line("done", turn=turn.to_dict())
    except MMRagError as exc:
        yield line("error", message=str(exc))
    finally:
        lock.release()


def create_app(
    pipeline: QAPipeline,
    *,
    title: str = "mm-rag chat",
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    note: str = "",
) -> Any:
    """The Starlette application (serve it with uvicorn; see :func:`serve`)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    positive_int("max_upload_bytes", max_upload_bytes)
    sessions = Sessions(pipeline)
    lock = threading.Lock()  # one model, one question at a time
    page = PAGE.read_text(encoding="utf-8").replace("{{title}}", _html(title)).replace("{{note}}", _html(note))

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

    def start(data: dict[str, Any]) -> Iterator[bytes]:
        question = data.get("question") or None
        if question is not None and not isinstance(question, str):
            raise ConfigError("question must be text")
        image = decode_upload(data["image"], max_bytes=max_upload_bytes) if data.get("image") else None
        session, conversation = sessions.get(data.get("session"))
        if not lock.acquire(timeout=600):
            raise ConfigError("the server is busy; try again")
        try:
            turn, pieces = conversation.ask_stream(question, image)
        except BaseException:
            lock.release()
            raise
        return _events(turn, pieces, session, lock)

    async def ask(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        try:
            data = await read_json(request)
            events = await run_in_threadpool(start, data)
        except ModelError as exc:
            return JSONResponse({"error": str(exc)}, status_code=500)
        except MMRagError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return StreamingResponse(events, media_type="application/x-ndjson")

    async def reset(request: Request) -> Response:
        try:
            data = await read_json(request)
        except MMRagError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        session, conversation = sessions.get(data.get("session"))
        conversation.reset()
        return JSONResponse({"session": session})

    async def media(request: Request) -> Response:
        record = request.path_params["record_id"]
        try:
            hits = pipeline.index.image_store.get(ids=[record])
        except MMRagError as exc:
            return JSONResponse({"error": one_line(exc)}, status_code=404)
        source = hits[0].metadata.get("source") if hits else None
        if not isinstance(source, str) or not Path(source).is_file():
            return JSONResponse({"error": "no such image"}, status_code=404)
        return FileResponse(source)

    return Starlette(routes=[
        Route("/", index),
        Route("/api/ask", ask, methods=["POST"]),
        Route("/api/reset", reset, methods=["POST"]),
        Route("/media/{record_id}", media),
    ])


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


__all__ = ["DEFAULT_MAX_UPLOAD_BYTES", "Sessions", "create_app", "decode_upload", "serve"]
