"""JSON over HTTP with retries and limits, shared by the remote components (sync ``httpx.Client``
and native ``httpx.AsyncClient``), configured by one
:class:`~mm_rag_components.remote.transport.TransportSettings`.

Retried, with exponential backoff and jitter: HTTP 429 and 5xx answers and connection failures
(refused, reset, connect timeout). A ``Retry-After`` header (seconds or an HTTP date) is honoured;
one asking for longer than ``max_backoff`` ends the retries at once. Not retried: other 4xx
answers, a read timeout (the server may still be working on it; asking again only doubles the
load) and a malformed JSON body. Every failure is a :class:`RemoteError` whose message is one line;
a broken limit is a :class:`LimitExceeded` (:class:`DeadlineExceeded`, :class:`ResponseTooLarge`)
naming it. The whole call — every try, the waits and the body — ends by ``deadline``.

API keys: an explicit ``api_key`` wins; else the environment's (``MMRAG_API_KEY`` …) — except
while :func:`mm_rag_components.config.from_dict` rebuilds a component whose config names its own
``base_url``: the environment's key is then not sent there unless the caller said so (see
:mod:`mm_rag_components.config`).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import random
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from ..aio import wait_at_most
from ..config import loading
from ..errors import BackendError, ConfigError
from ..validate import text
from .deadline import bounded_client, deadline, passed
from .transport import TransportSettings, transport_settings

logger = logging.getLogger(__name__)


class RemoteError(BackendError):
    """A request failed for good; ``status`` is the HTTP status when there was an answer."""

    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class LimitExceeded(RemoteError):
    """A call broke one of its :class:`TransportSettings` limits; ``limit`` is its name."""

    def __init__(self, message: str, limit: str, status: int | None = None, body: str = "") -> None:
        super().__init__(message, status, body)
        self.limit = limit


class DeadlineExceeded(LimitExceeded):
    """The call took longer than ``deadline`` (or a stream than ``first_token_timeout`` to start)."""


class ResponseTooLarge(LimitExceeded):
    """The answer was longer than ``max_response_bytes`` (or a stream than ``max_stream_chunks``)."""


@dataclass
class _Verdict:
    value: Any = None
    error: RemoteError | None = None
    retry_in: float | None = None  # seconds; None: do not retry


def env_value(argument: str | None, *names: str) -> str | None:
    """``argument`` when given, else the first of the environment variables ``names`` that is set."""
    if argument is not None:
        return argument
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _api_key(api_key: str | None, base_url: str | None, url_env: tuple[str, ...], key_env: tuple[str, ...]) -> str | None:
    """``api_key``, else the environment's key — unless a config being loaded names ``base_url``
    and the caller of ``from_dict`` neither passed a key nor allowed the environment's."""
    if api_key is not None:
        return api_key
    trust = loading()
    if trust is not None and trust.api_key is not None:
        return trust.api_key
    env_key = env_value(None, *key_env)
    if trust is None or base_url is None or trust.use_env_key or env_key is None:
        return env_key
    env_url = env_value(None, *url_env)
    if env_url is not None and env_url.rstrip("/") == base_url.rstrip("/"):
        return env_key  # the environment names this server itself
    logger.warning("not sending the environment's API key (%s) to %s, named by a loaded config: pass api_key= or "
                   "use_env_key=True to from_dict", " / ".join(key_env), base_url)
    return None


def server_client(
    base_url: str | None, api_key: str | None, *, url_env: tuple[str, ...], key_env: tuple[str, ...],
    transport: TransportSettings | None = None,
) -> JsonClient:
    """A :class:`JsonClient` for ``base_url`` (else the first of ``url_env`` that is set), with
    ``api_key`` (else the first of ``key_env``, see the module docstring)."""
    resolved = env_value(base_url, *url_env)
    if resolved is None:
        others = f" (or {', '.join(url_env[1:])})" if len(url_env) > 1 else ""
        raise ConfigError(f"no server: pass base_url= or set {url_env[0]}{others}")
    return JsonClient(resolved, api_key=_api_key(api_key, base_url, url_env, key_env), transport=transport)


def openai_client(base_url: str | None, api_key: str | None, transport: TransportSettings | None = None) -> JsonClient:
    """:func:`server_client` for an OpenAI-compatible server: ``MMRAG_BASE_URL`` / ``OPENAI_BASE_URL``
    and ``MMRAG_API_KEY`` / ``OPENAI_API_KEY`` when not given."""
    return server_client(
        base_url, api_key, url_env=("MMRAG_BASE_URL", "OPENAI_BASE_URL"), key_env=("MMRAG_API_KEY", "OPENAI_API_KEY"),
        transport=transport,
    )


def extra_body_dict(extra_body: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of the extra request fields (``None``: none)."""
    if extra_body is not None and not isinstance(extra_body, dict):
        raise ConfigError(f"extra_body must be a dict or None, got {type(extra_body).__name__}")
    return dict(extra_body or {})


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header in seconds (delta-seconds or an HTTP date); ``None`` if unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def snippet(body: str | bytes, limit: int = 200) -> str:
    """``body`` on one line, at most ``limit`` characters."""
    if isinstance(body, bytes):
        body = body[: limit * 4].decode("utf-8", "replace")
    line = " ".join(body.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def decode_json(raw: bytes, where: str, status: int | None = None) -> Any:
    """``raw`` decoded as JSON, or a :class:`RemoteError` (also for JSON nested too deep to decode)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise RemoteError(f"malformed JSON from {where}: {snippet(raw, 80)!r}", status, raw.decode("utf-8", "replace")) from None


class JsonClient:
    """POST JSON to ``base_url + path`` and return the decoded answer, retrying what may pass,
    within the limits of ``transport`` (a :class:`TransportSettings`; waits grow as
    ``backoff · 2^attempt``, at most ``max_backoff``, times a random factor in [0.5, 1] so that
    many clients do not retry in step). The old ``timeout=``, ``retries=``, ``backoff=`` and
    ``max_backoff=`` keywords still work, with a :class:`DeprecationWarning`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        transport: TransportSettings | None = None,
        headers: dict[str, str] | None = None,
        **legacy: Any,
    ) -> None:
        base_url = text("base_url", base_url)
        if not base_url.lower().startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.settings = transport_settings(transport, legacy, owner="JsonClient", default=TransportSettings(),
                                           accepted=("timeout", "retries", "backoff", "max_backoff"))
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def url(self, path: str) -> str:
        return self.base_url + "/" + path.lstrip("/")

    def start(self) -> tuple[float, float]:
        """``(now, deadline)`` of a call starting now (``time.monotonic()`` values)."""
        now = time.monotonic()
        return now, now + self.settings.deadline

    # verdicts --------------------------------------------------------------------------------
    def retry_or_fail(self, attempt: int, retry_after: float | None, why: str, at: float, status: int | None = None, body: str = "") -> _Verdict:
        """Seconds to wait before try ``attempt + 1``, or the error that ends the call (no retry
        left, a ``Retry-After`` over ``max_backoff``, or no time left before the deadline ``at``)."""
        s = self.settings
        if attempt >= s.retries:
            suffix = f" after {attempt} retr{'y' if attempt == 1 else 'ies'}" if attempt else ""
            return _Verdict(error=RemoteError(f"{why}{suffix}", status, body))
        if retry_after is not None and retry_after > s.max_backoff:
            return _Verdict(error=RemoteError(f"{why}; the server asks to retry after {retry_after:g} s (over max_backoff={s.max_backoff:g} s)", status, body))
        wait = retry_after if retry_after is not None else min(s.max_backoff, s.backoff * 2**attempt) * random.uniform(0.5, 1.0)
        if time.monotonic() + wait >= at:
            return _Verdict(error=DeadlineExceeded(f"{why}; no time left to retry within deadline={s.deadline:g} s", "deadline", status, body))
        return _Verdict(retry_in=wait)

    def judge(self, attempt: int, path: str, status: int, headers: Any, raw: bytes, at: float) -> _Verdict:
        """The verdict on an answer: retry (429, 5xx), an error (other 4xx), else its JSON."""
        body = raw.decode("utf-8", "replace")
        if status == 429 or status >= 500:
            return self.retry_or_fail(attempt, retry_after_seconds(headers.get("Retry-After")), f"HTTP {status} from {path}: {snippet(body)}", at, status, body)
        if status >= 400:
            return _Verdict(error=RemoteError(f"HTTP {status} from {path}: {snippet(body)}", status, body))
        try:
            return _Verdict(value=decode_json(raw, path, status))
        except RemoteError as exc:
            return _Verdict(error=exc)

    def judge_exception(self, attempt: int, path: str, exc: Exception, at: float, first: float | None = None) -> _Verdict:
        """The verdict on a failed try: retry a connection failure, else the error (a timeout
        past the deadline ``at`` — or, for a stream, past its first-piece bound ``first`` — is a
        :class:`DeadlineExceeded`)."""
        if isinstance(exc, LimitExceeded):
            return _Verdict(error=exc)
        if isinstance(exc, httpx.TimeoutException) and passed(at):
            return _Verdict(error=self.deadline_error(path))
        if isinstance(exc, httpx.TimeoutException) and first is not None and passed(first):
            return _Verdict(error=self.deadline_error(path, first=True))
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            return _Verdict(error=RemoteError(f"no answer from {path} within {self.settings.timeout:g} s (timeout)"))
        if isinstance(exc, httpx.TransportError):
            return self.retry_or_fail(attempt, None, f"cannot reach {self.url(path)}: {type(exc).__name__}: {snippet(str(exc), 120)}", at)
        return _Verdict(error=RemoteError(f"request to {path} failed: {type(exc).__name__}: {snippet(str(exc), 120)}"))

    def deadline_error(self, path: str, *, first: bool = False) -> DeadlineExceeded:
        if first:
            return DeadlineExceeded(f"no text from {path} within first_token_timeout={self.settings.first_token:g} s", "first_token_timeout")
        return DeadlineExceeded(f"no complete answer from {path} within deadline={self.settings.deadline:g} s", "deadline")

    def too_large(self, path: str, size: int | None = None) -> ResponseTooLarge:
        cap = self.settings.max_response_bytes
        said = f" ({size:,} bytes)" if size is not None else ""
        return ResponseTooLarge(f"the answer from {path}{said} is over max_response_bytes={cap:,}", "max_response_bytes")

    def check_length(self, path: str, headers: Any) -> None:
        declared = headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.settings.max_response_bytes:
            raise self.too_large(path, int(declared))

    # sync ------------------------------------------------------------------------------------
    def sync_client(self) -> httpx.Client:
        """The shared sync client (connections obey :func:`~mm_rag_components.remote.deadline.deadline`)."""
        with self._lock:
            if self._client is None:
                self._client = bounded_client(headers=self.headers, timeout=httpx.Timeout(self.settings.timeout))
            return self._client

    def read(self, response: httpx.Response, path: str, at: float) -> bytes:
        """The whole body of ``response``, at most ``max_response_bytes``, by the deadline ``at``."""
        self.check_length(path, response.headers)
        return _join(response.iter_bytes(), self.settings.max_response_bytes, lambda: self.too_large(path), at, lambda: self.deadline_error(path))

    def post(self, path: str, payload: dict[str, Any]) -> Any:
        """POST ``payload``; the decoded JSON answer, or a :class:`RemoteError`."""
        client = self.sync_client()
        _, at = self.start()
        attempt = 0
        with deadline(at):
            while True:
                try:
                    with client.stream("POST", self.url(path), json=payload) as response:
                        raw = self.read(response, path, at)
                        verdict = self.judge(attempt, path, response.status_code, response.headers, raw, at)
                except (httpx.HTTPError, LimitExceeded) as exc:
                    verdict = self.judge_exception(attempt, path, exc, at)
                if verdict.retry_in is None:
                    if verdict.error is not None:
                        raise verdict.error
                    return verdict.value
                time.sleep(verdict.retry_in)
                attempt += 1

    # async -----------------------------------------------------------------------------------
    def async_client(self) -> httpx.AsyncClient:
        """A new ``httpx.AsyncClient`` for one batch of async requests (the caller closes it:
        ``async with``); one per call, because a client belongs to the event loop it runs on."""
        return httpx.AsyncClient(headers=self.headers, timeout=httpx.Timeout(self.settings.timeout))

    async def aread(self, response: httpx.Response, path: str) -> bytes:
        """Async :meth:`read` (the caller bounds it in time)."""
        self.check_length(path, response.headers)
        return await _ajoin(response.aiter_bytes(), self.settings.max_response_bytes, lambda: self.too_large(path))

    async def apost(self, client: httpx.AsyncClient, path: str, payload: dict[str, Any]) -> Any:
        """Async :meth:`post` through ``client`` (from :meth:`async_client`)."""
        _, at = self.start()
        attempt = 0
        while True:
            try:
                verdict = await wait_at_most(self._atry(client, path, payload, attempt, at), at - time.monotonic())
            except asyncio.TimeoutError:
                raise self.deadline_error(path) from None
            if verdict.retry_in is None:
                if verdict.error is not None:
                    raise verdict.error
                return verdict.value
            await asyncio.sleep(verdict.retry_in)
            attempt += 1

    async def _atry(self, client: httpx.AsyncClient, path: str, payload: dict[str, Any], attempt: int, at: float) -> _Verdict:
        try:
            async with client.stream("POST", self.url(path), json=payload) as response:
                raw = await self.aread(response, path)
                return self.judge(attempt, path, response.status_code, response.headers, raw, at)
        except (httpx.HTTPError, LimitExceeded) as exc:
            return self.judge_exception(attempt, path, exc, at)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _join(chunks: Iterator[bytes], cap: int, too_large: Any, at: float, late: Any) -> bytes:
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > cap:
            raise too_large()
        if passed(at):  # a proxied connection is bounded between chunks only
            raise late()
    return bytes(body)


async def _ajoin(chunks: AsyncIterator[bytes], cap: int, too_large: Any) -> bytes:
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > cap:
            raise too_large()
    return bytes(body)


__all__ = [
    "DeadlineExceeded", "JsonClient", "LimitExceeded", "RemoteError", "ResponseTooLarge", "decode_json", "env_value",
    "retry_after_seconds", "snippet",
]
