"""An OpenAI-compatible chat model as a generator: chat turns (text and images) in, text out.

:class:`OpenAIChatGenerator` implements the generator protocol of
:mod:`~mm_rag_components.generation` — ``generate``, a native ``agenerate`` and streaming
``stream`` / ``astream`` — over ``/chat/completions`` of any OpenAI-compatible server (vLLM, llama.cpp,
Ollama, hosted APIs), so it can answer (:class:`~mm_rag_components.answer.MultimodalAnswerer`) and
rerank listwise (:class:`~mm_rag_components.rerank.listwise.ListwiseRanker`). Images travel as
``data:`` URIs. Requests are retried as :mod:`~mm_rag_components.remote.http` says; a stream is
retried only until its first piece (a stream that breaks off later is a ``RemoteError``: a retry
would repeat the answer). A server that ignores ``stream: true`` and answers with one JSON body is
read as a whole.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import httpx

from ..errors import ConfigError
from ..generation.base import ChatTurn
from ..generation.images import check_image_format, encode_image
from ..validate import boolean, positive_int, text
from .http import RemoteError, extra_body_dict, openai_client, retry_after_seconds

PATH = "/chat/completions"


class OpenAIChatGenerator:
    """``model`` (the name the server knows) at ``base_url`` (``…/v1``; default ``MMRAG_BASE_URL``
    then ``OPENAI_BASE_URL``); ``api_key`` defaults to ``MMRAG_API_KEY`` then ``OPENAI_API_KEY``.

    Greedy by default (``temperature=0``), at most ``max_tokens`` tokens. ``accepts_images=False``
    for text-only models (callers then describe images instead of sending them).
    ``extra_body`` is merged into every request.
    """

    #: The work happens on a server: calls may overlap (the web chat answers questions concurrently).
    remote = True

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        accepts_images: bool = True,
        image_format: str = "PNG",
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        self.model = text("model", model)
        self.max_tokens = positive_int("max_tokens", max_tokens)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0.0 <= temperature <= 2.0:
            raise ConfigError(f"temperature must be a number from 0 to 2, got {temperature!r}")
        self.temperature = float(temperature)
        self.accepts_images = boolean("accepts_images", accepts_images)
        self.image_format = check_image_format(image_format)
        self.extra_body = extra_body_dict(extra_body)
        self._base_url_arg = base_url
        self.client = openai_client(base_url, api_key, timeout=timeout, retries=retries, backoff=backoff, max_backoff=max_backoff)
        self.base_url = self.client.base_url
        self.name = f"{self.model}@{self.base_url}"
        self._stream_client: httpx.Client | None = None

    def config(self) -> dict[str, Any]:
        """Constructor arguments (the API key is never saved)."""
        return {
            "model": self.model, "base_url": self._base_url_arg, "max_tokens": self.max_tokens,
            "temperature": self.temperature, "accepts_images": self.accepts_images, "image_format": self.image_format,
            "timeout": self.client.timeout, "retries": self.client.retries, "backoff": self.client.backoff,
            "max_backoff": self.client.max_backoff, "extra_body": self.extra_body or None,
        }

    # requests --------------------------------------------------------------------------------
    def messages(self, turns: Sequence[ChatTurn]) -> list[dict[str, Any]]:
        """Chat turns as OpenAI messages: a text-only turn as one string, else ``text`` /
        ``image_url`` parts in order (images as ``data:`` URIs)."""
        out = []
        for turn in turns:
            if not isinstance(turn, ChatTurn):
                raise ConfigError(f"turns must be ChatTurn objects, got {type(turn).__name__}")
            if all(isinstance(p, str) for p in turn.parts):
                out.append({"role": turn.role, "content": "\n".join(turn.parts)})
                continue
            parts: list[dict[str, Any]] = []
            for part in turn.parts:
                if isinstance(part, str):
                    parts.append({"type": "text", "text": part})
                else:
                    data, mime = encode_image(part, self.image_format)
                    url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
                    parts.append({"type": "image_url", "image_url": {"url": url}})
            out.append({"role": turn.role, "content": parts})
        return out

    def payload(self, turns: Sequence[ChatTurn], *, stream: bool = False) -> dict[str, Any]:
        body = {**self.extra_body, "model": self.model, "messages": self.messages(turns),
                "max_tokens": self.max_tokens, "temperature": self.temperature}
        if stream:
            body["stream"] = True
        return body

    def generate(self, turns: Sequence[ChatTurn]) -> str:
        """The whole answer (one request, retried as :class:`JsonClient` does)."""
        return answer_text(self.client.post(PATH, self.payload(turns)))

    async def agenerate(self, turns: Sequence[ChatTurn]) -> str:
        """Native async :meth:`generate`."""
        payload = self.payload(turns)
        async with self.client.async_client() as client:
            return answer_text(await self.client.apost(client, PATH, payload))

    # streaming -------------------------------------------------------------------------------
    def stream(self, turns: Sequence[ChatTurn]) -> Iterator[str]:
        """The answer's text as the server streams it (server-sent events, ``stream: true``)."""
        payload = self.payload(turns, stream=True)
        client = self._client()
        attempt = 0
        while True:
            started = False
            try:
                with client.stream("POST", self.client.url(PATH), json=payload) as response:
                    retry_in = self._judge(attempt, response.status_code, response.headers, lambda: _body(response.read()))
                    if retry_in is None:
                        for piece in _read_stream(response.headers, response.iter_lines(), response.read):
                            started = True
                            yield piece
                        return
            except httpx.HTTPError as exc:
                retry_in = self._failure(attempt, exc, started)
            time.sleep(retry_in)
            attempt += 1

    async def astream(self, turns: Sequence[ChatTurn]) -> AsyncIterator[str]:
        """Native async :meth:`stream` (the request is built in a worker thread: images are
        encoded there, not on the event loop)."""
        payload = await asyncio.to_thread(self.payload, turns, stream=True)
        attempt = 0
        async with self.client.async_client() as client:
            while True:
                started = False
                try:
                    async with client.stream("POST", self.client.url(PATH), json=payload) as response:
                        if response.status_code >= 400:
                            await response.aread()
                        retry_in = self._judge(attempt, response.status_code, response.headers, lambda: _body(response.content))
                        if retry_in is None:
                            async for piece in _aread_stream(response):
                                started = True
                                yield piece
                            return
                except httpx.HTTPError as exc:
                    retry_in = self._failure(attempt, exc, started)
                await asyncio.sleep(retry_in)
                attempt += 1

    def _judge(self, attempt: int, status: int, headers: Any, body: Callable[[], str]) -> float | None:
        """``None`` for a streamable answer; seconds to wait before retrying a 429/5xx; a
        :class:`RemoteError` for another error status or when no retry is left."""
        if status == 429 or status >= 500:
            return self._retry_in(attempt, headers.get("Retry-After"), f"HTTP {status} from {PATH}: {body()}")
        if status >= 400:
            raise RemoteError(f"HTTP {status} from {PATH}: {body()}", status)
        return None

    def _failure(self, attempt: int, exc: httpx.HTTPError, started: bool) -> float:
        """Seconds to wait before retrying after a transport failure, or a :class:`RemoteError`:
        a stream is retried only until its first piece (a retry would repeat the answer)."""
        detail = f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
        if started:
            raise RemoteError(f"the stream from {PATH} broke off: {detail}") from exc
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            raise RemoteError(f"no answer from {PATH} within {self.client.timeout:g} s (timeout)") from exc
        if isinstance(exc, httpx.TransportError):
            return self._retry_in(attempt, None, f"cannot reach {self.client.url(PATH)}: {detail}")
        raise RemoteError(f"request to {PATH} failed: {detail}") from exc

    def _retry_in(self, attempt: int, retry_after: str | None, why: str) -> float:
        """Seconds to wait before the next try, or a :class:`RemoteError` when no try is left."""
        if attempt >= self.client.retries:
            suffix = f" after {attempt} retr{'y' if attempt == 1 else 'ies'}" if attempt else ""
            raise RemoteError(f"{why}{suffix}")
        asked = retry_after_seconds(retry_after)
        if asked is not None:
            if asked > self.client.max_backoff:
                raise RemoteError(f"{why}; the server asks to retry after {asked:g} s (over max_backoff={self.client.max_backoff:g} s)")
            return asked
        return min(self.client.max_backoff, self.client.backoff * 2**attempt) * random.uniform(0.5, 1.0)

    def _client(self) -> httpx.Client:
        if self._stream_client is None:
            self._stream_client = httpx.Client(headers=self.client.headers, timeout=httpx.Timeout(self.client.timeout))
        return self._stream_client

    def close(self) -> None:
        """Close the HTTP connection pools."""
        self.client.close()
        if self._stream_client is not None:
            self._stream_client.close()
            self._stream_client = None


def answer_text(answer: Any) -> str:
    """The message text of a chat-completions answer (a :class:`RemoteError` when there is none)."""
    try:
        content = answer["choices"][0]["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise RemoteError(f"the answer has no choices[0].message: {json.dumps(answer)[:120]}") from None
    if isinstance(content, list):  # some servers answer with content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _body(raw: bytes) -> str:
    line = " ".join(raw.decode("utf-8", "replace").split())
    return line if len(line) <= 200 else line[:199] + "…"


def _whole(raw: bytes) -> str:
    """The text of a plain JSON answer (a server that ignored ``stream: true``)."""
    try:
        whole = json.loads(raw)
    except ValueError:
        raise RemoteError(f"malformed answer from {PATH}: {raw[:80]!r}") from None
    return answer_text(whole)


def _event(line: str) -> tuple[str | None, str | None]:
    """(text delta, end) of one server-sent-event line: ``end`` is ``"done"`` for ``[DONE]``,
    the ``finish_reason`` of a final chunk, else ``None``."""
    if not line.startswith("data:"):
        return None, None  # blank separators, comments (": keep-alive"), event names
    data = line[5:].strip()
    if data == "[DONE]":
        return None, "done"
    try:
        event = json.loads(data)
    except ValueError:
        raise RemoteError(f"malformed stream event from {PATH}: {data[:80]!r}") from None
    if isinstance(event, dict) and event.get("error"):
        raise RemoteError(f"the server stopped the stream: {json.dumps(event['error'])[:160]}")
    try:
        choice = event["choices"][0]
        delta = choice.get("delta") or {}
    except (KeyError, IndexError, TypeError, AttributeError):
        return None, None  # e.g. a final usage-only event
    piece = delta.get("content") if isinstance(delta, dict) else None
    finish = choice.get("finish_reason")
    return (piece if isinstance(piece, str) and piece else None), (str(finish) if finish else None)


def _is_event_stream(headers: Any) -> bool:
    return "text/event-stream" in headers.get("content-type", "")


#: A stream that stops before ``[DONE]`` or a ``finish_reason``: the server went away mid-answer.
CUT_SHORT = f"the stream from {PATH} ended before the answer did (no finish_reason, no [DONE]): did the server stop?"


def _read_stream(headers: Any, lines: Iterator[str], read: Callable[[], bytes]) -> Iterator[str]:
    """Text deltas of a server-sent-event stream; a plain JSON answer is read as a whole."""
    if not _is_event_stream(headers):
        content = _whole(read())
        if content:
            yield content
        return
    finished = None
    for line in lines:
        piece, end = _event(line)
        if piece is not None:
            yield piece
        if end == "done":
            return
        finished = finished or end
    if finished is None:
        raise RemoteError(CUT_SHORT)


async def _aread_stream(response: httpx.Response) -> AsyncIterator[str]:
    """Async :func:`_read_stream`."""
    if not _is_event_stream(response.headers):
        content = _whole(await response.aread())
        if content:
            yield content
        return
    finished = None
    async for line in response.aiter_lines():
        piece, end = _event(line)
        if piece is not None:
            yield piece
        if end == "done":
            return
        finished = finished or end
    if finished is None:
        raise RemoteError(CUT_SHORT)


__all__ = ["OpenAIChatGenerator", "answer_text"]
