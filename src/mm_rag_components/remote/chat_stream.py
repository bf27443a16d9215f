"""Chat-completions answers: the message text of a whole answer, and a streamed answer read piece
by piece within the transport's limits.

A stream (server-sent events) is retried only until its first piece of text (a stream that breaks
off later is a ``RemoteError``: a retry would repeat the answer). It must bring its first piece
within ``first_token_timeout`` and end within ``deadline``; it may read at most
``max_response_bytes`` and ``max_stream_chunks`` events — a server streaming forever, ignoring
``max_tokens``, or sending keep-alive comments and no text, is cut with a
:class:`~mm_rag_components.remote.http.LimitExceeded` naming the limit. A server that ignores
``stream: true`` and answers with one JSON body is read as a whole.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from ..aio import wait_at_most
from .deadline import deadline, passed
from .http import JsonClient, LimitExceeded, RemoteError, ResponseTooLarge, decode_json, snippet


def answer_text(answer: Any) -> str:
    """The message text of a chat-completions answer (a :class:`RemoteError` when there is none,
    or when its content is neither text, ``null`` nor text parts)."""
    try:
        content = answer["choices"][0]["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise RemoteError(f"the answer has no choices[0].message: {snippet(json.dumps(answer), 120)}") from None
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):  # some servers answer with content parts
        texts = [p.get("text") for p in content if isinstance(p, dict) and "text" in p]
        if all(isinstance(t, str) for t in texts):
            return "".join(texts)
        raise RemoteError(f"the answer's content parts hold non-text: {snippet(json.dumps(content), 120)}")
    raise RemoteError(f"the answer's content is {type(content).__name__}, not text: {snippet(json.dumps(content), 80)}")


def chat_event(line: str, path: str) -> tuple[str | None, str | None]:
    """(text delta, end) of one server-sent-event line: ``end`` is ``"done"`` for ``[DONE]``,
    the ``finish_reason`` of a final chunk, else ``None``."""
    if not line.startswith("data:"):
        return None, None  # blank separators, comments (": keep-alive"), event names
    data = line[5:].strip()
    if data == "[DONE]":
        return None, "done"
    try:
        event = json.loads(data)
    except (ValueError, RecursionError):
        raise RemoteError(f"malformed stream event from {path}: {data[:80]!r}") from None
    if isinstance(event, dict) and event.get("error"):
        raise RemoteError(f"the server stopped the stream: {snippet(json.dumps(event['error']), 160)}")
    try:
        choice = event["choices"][0]
        delta = choice.get("delta") or {}
    except (KeyError, IndexError, TypeError, AttributeError):
        return None, None  # e.g. a final usage-only event
    piece = delta.get("content") if isinstance(delta, dict) else None
    if piece is not None and not isinstance(piece, str):
        raise RemoteError(f"a stream event's content is {type(piece).__name__}, not text: {snippet(json.dumps(piece), 80)}")
    finish = choice.get("finish_reason")
    return (piece or None), (str(finish) if finish else None)


def cut_short(path: str) -> str:
    return f"the stream from {path} ended before the answer did (no finish_reason, no [DONE]): did the server stop?"


class _Reader:
    """One streamed answer: bytes in, text pieces out, every limit checked on the way."""

    def __init__(self, client: JsonClient, path: str, response: httpx.Response, started: float, at: float) -> None:
        self.client, self.path = client, path
        self.events = "text/event-stream" in response.headers.get("content-type", "")
        self.first_at = min(at, started + client.settings.first_token)
        self.at = at
        self.buffer = bytearray()
        self.total = self.chunks = 0
        self.started = self.done = False
        self.finished: str | None = None
        client.check_length(path, response.headers)

    def bound(self) -> float:
        """The deadline of the next read: the first piece's until it came, then the whole call's."""
        return self.at if self.started else self.first_at

    def late(self) -> LimitExceeded:
        return self.client.deadline_error(self.path, first=not self.started and self.first_at < self.at)

    def feed(self, chunk: bytes | None) -> list[str]:
        """The text pieces completed by ``chunk`` (``None``: the body ended)."""
        if passed(self.bound()):  # a proxied connection is bounded between chunks only
            raise self.late()
        if chunk is not None:
            self.total += len(chunk)
            if self.total > self.client.settings.max_response_bytes:
                raise self.client.too_large(self.path)
            self.buffer += chunk
        if not self.events:
            return [] if chunk is not None else [text for text in [answer_text(decode_json(bytes(self.buffer), self.path))] if text]
        pieces: list[str] = []
        lines = self.buffer.split(b"\n")
        self.buffer = bytearray() if chunk is None else bytearray(lines.pop())
        for raw in lines:
            if self.done:
                break
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if line.startswith("data:"):
                self.chunks += 1
                if self.chunks > self.client.settings.max_stream_chunks:
                    cap = self.client.settings.max_stream_chunks
                    raise ResponseTooLarge(f"the stream from {self.path} sent over max_stream_chunks={cap:,} events", "max_stream_chunks")
            piece, end = chat_event(line, self.path)
            if piece is not None:
                pieces.append(piece)
            self.done = end == "done"
            self.finished = self.finished or end
        if chunk is None and not self.done and self.finished is None:
            raise RemoteError(cut_short(self.path))
        self.started = self.started or bool(pieces)
        return pieces


def _status_verdict(client: JsonClient, path: str, attempt: int, response: httpx.Response, raw: bytes, at: float) -> float:
    """Seconds to wait before retrying a 429/5xx answer, else the error of another error status."""
    verdict = client.judge(attempt, path, response.status_code, response.headers, raw, at)
    if verdict.retry_in is None:
        raise verdict.error or RemoteError(f"HTTP {response.status_code} from {path}", response.status_code)
    return verdict.retry_in


def _failure(client: JsonClient, path: str, attempt: int, exc: httpx.HTTPError, reader: _Reader | None, at: float, first: float) -> float:
    """Seconds to wait before retrying after a transport failure, or the error that ends the call."""
    if reader is not None and reader.started:
        if isinstance(exc, httpx.TimeoutException) and passed(at):
            raise client.deadline_error(path) from exc
        raise RemoteError(f"the stream from {path} broke off: {type(exc).__name__}: {snippet(str(exc), 120)}") from exc
    verdict = client.judge_exception(attempt, path, exc, at, first)
    if verdict.retry_in is None:
        raise verdict.error or RemoteError(f"request to {path} failed") from exc
    return verdict.retry_in


def stream_text(client: JsonClient, path: str, payload: dict[str, Any]) -> Iterator[str]:
    """The text pieces of a streamed answer to ``payload`` (see the module docstring)."""
    http = client.sync_client()
    started, at = client.start()
    first = min(at, started + client.settings.first_token)
    attempt = 0
    while True:
        reader = response = None
        try:
            with deadline(first):
                response = http.send(http.build_request("POST", client.url(path), json=payload), stream=True)
            if response.status_code >= 400:
                with deadline(at):
                    raw = client.read(response, path, at)
                retry_in = _status_verdict(client, path, attempt, response, raw, at)
            else:
                reader = _Reader(client, path, response, started, at)
                chunks = response.iter_bytes()
                while not reader.done:
                    with deadline(reader.bound()):
                        chunk = next(chunks, None)
                    yield from reader.feed(chunk)
                    if chunk is None:
                        break
                return
        except httpx.HTTPError as exc:
            retry_in = _failure(client, path, attempt, exc, reader, at, first)
        finally:
            if response is not None:
                response.close()
        time.sleep(retry_in)
        attempt += 1


async def astream_text(client: JsonClient, path: str, payload: dict[str, Any]) -> AsyncIterator[str]:
    """Async :func:`stream_text` (every await bounded by :func:`~mm_rag_components.aio.wait_at_most`)."""
    started, at = client.start()
    first = min(at, started + client.settings.first_token)

    def left(until: float) -> float:
        return max(0.0, until - time.monotonic())

    async with client.async_client() as http:
        attempt = 0
        while True:
            reader = response = None
            try:
                request = http.build_request("POST", client.url(path), json=payload)
                response = await wait_at_most(http.send(request, stream=True), left(first))
                if response.status_code >= 400:
                    raw = await wait_at_most(client.aread(response, path), left(at))
                    retry_in = _status_verdict(client, path, attempt, response, raw, at)
                else:
                    reader = _Reader(client, path, response, started, at)
                    chunks = response.aiter_bytes()
                    while not reader.done:
                        chunk = await wait_at_most(anext(chunks, None), left(reader.bound()))
                        for piece in reader.feed(chunk):
                            yield piece
                        if chunk is None:
                            break
                    return
            except asyncio.TimeoutError:
                late = reader.late() if reader is not None else client.deadline_error(path, first=response is None and first < at)
                raise late from None
            except httpx.HTTPError as exc:
                retry_in = _failure(client, path, attempt, exc, reader, at, first)
            finally:
                if response is not None:
                    await response.aclose()
            await asyncio.sleep(retry_in)
            attempt += 1


__all__ = ["answer_text", "astream_text", "chat_event", "cut_short", "stream_text"]
