"""JSON over HTTP with retries, shared by the remote scorers (sync ``httpx.Client`` and native
``httpx.AsyncClient``).

Retried, with exponential backoff and jitter: HTTP 429 and 5xx answers and connection failures
(refused, reset, connect timeout). A ``Retry-After`` header (seconds or an HTTP date) is honoured;
one asking for longer than ``max_backoff`` ends the retries at once. Not retried: other 4xx
answers, a read timeout (the server may still be working on it; asking again only doubles the
load) and a malformed JSON body. Every failure is a :class:`RemoteError` whose message is one line.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from ..errors import BackendError, ConfigError
from ..validate import integer, number, positive_number, text


class RemoteError(BackendError):
    """A request failed for good; ``status`` is the HTTP status when there was an answer."""

    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


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


def server_client(
    base_url: str | None, api_key: str | None, *, url_env: tuple[str, ...], key_env: tuple[str, ...], **options: Any,
) -> JsonClient:
    """A :class:`JsonClient` for ``base_url`` (else the first of ``url_env`` that is set), with
    ``api_key`` (else the first of ``key_env``); ``options``: timeout and retry settings."""
    resolved = env_value(base_url, *url_env)
    if resolved is None:
        others = f" (or {', '.join(url_env[1:])})" if len(url_env) > 1 else ""
        raise ConfigError(f"no server: pass base_url= or set {url_env[0]}{others}")
    return JsonClient(resolved, api_key=env_value(api_key, *key_env), **options)


def openai_client(base_url: str | None, api_key: str | None, **options: Any) -> JsonClient:
    """:func:`server_client` for an OpenAI-compatible server: ``MMRAG_BASE_URL`` / ``OPENAI_BASE_URL``
    and ``MMRAG_API_KEY`` / ``OPENAI_API_KEY`` when not given."""
    return server_client(
        base_url, api_key, url_env=("MMRAG_BASE_URL", "OPENAI_BASE_URL"), key_env=("MMRAG_API_KEY", "OPENAI_API_KEY"), **options,
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


def _snippet(body: str, limit: int = 200) -> str:
    line = " ".join(body.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class JsonClient:
    """POST JSON to ``base_url + path`` and return the decoded answer, retrying what may pass.

    ``timeout`` bounds each request (seconds); ``retries`` is the number of extra attempts;
    waits grow as ``backoff · 2^attempt`` (at most ``max_backoff``), times a random factor in
    [0.5, 1] so that many clients do not retry in step.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        base_url = text("base_url", base_url)
        if not base_url.lower().startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = positive_number("timeout", timeout)
        self.retries = integer("retries", retries, minimum=0)
        self.backoff = number("backoff", backoff, minimum=0.0)
        self.max_backoff = number("max_backoff", max_backoff, minimum=0.0)
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def url(self, path: str) -> str:
        return self.base_url + "/" + path.lstrip("/")

    # verdicts --------------------------------------------------------------------------------
    def _wait(self, attempt: int, retry_after: float | None, why: str) -> _Verdict:
        if attempt >= self.retries:
            suffix = f" after {attempt} retr{'y' if attempt == 1 else 'ies'}" if attempt else ""
            return _Verdict(error=RemoteError(f"{why}{suffix}"))
        if retry_after is not None:
            if retry_after > self.max_backoff:
                return _Verdict(error=RemoteError(f"{why}; the server asks to retry after {retry_after:g} s (over max_backoff={self.max_backoff:g} s)"))
            return _Verdict(retry_in=retry_after)
        delay = min(self.max_backoff, self.backoff * 2**attempt)
        return _Verdict(retry_in=delay * random.uniform(0.5, 1.0))

    def _judge_response(self, attempt: int, path: str, response: httpx.Response) -> _Verdict:
        status = response.status_code
        if status == 429 or status >= 500:
            verdict = self._wait(attempt, retry_after_seconds(response.headers.get("Retry-After")), f"HTTP {status} from {path}: {_snippet(response.text)}")
            if verdict.error is not None:
                verdict.error.status, verdict.error.body = status, response.text
            return verdict
        if status >= 400:
            return _Verdict(error=RemoteError(f"HTTP {status} from {path}: {_snippet(response.text)}", status, response.text))
        try:
            return _Verdict(value=response.json())
        except ValueError:
            return _Verdict(error=RemoteError(f"malformed JSON from {path}: {_snippet(response.text, 80)!r}", status, response.text))

    def _judge_exception(self, attempt: int, path: str, exc: Exception) -> _Verdict:
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            return _Verdict(error=RemoteError(f"no answer from {path} within {self.timeout:g} s (timeout)"))
        if isinstance(exc, httpx.TransportError):
            return self._wait(attempt, None, f"cannot reach {self.url(path)}: {type(exc).__name__}: {_snippet(str(exc), 120)}")
        return _Verdict(error=RemoteError(f"request to {path} failed: {type(exc).__name__}: {_snippet(str(exc), 120)}"))

    # sync ------------------------------------------------------------------------------------
    def _sync_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(headers=self.headers, timeout=httpx.Timeout(self.timeout))
            return self._client

    def post(self, path: str, payload: dict[str, Any]) -> Any:
        """POST ``payload``; the decoded JSON answer, or a :class:`RemoteError`."""
        client = self._sync_client()
        attempt = 0
        while True:
            try:
                verdict = self._judge_response(attempt, path, client.post(self.url(path), json=payload))
            except httpx.HTTPError as exc:
                verdict = self._judge_exception(attempt, path, exc)
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
        return httpx.AsyncClient(headers=self.headers, timeout=httpx.Timeout(self.timeout))

    async def apost(self, client: httpx.AsyncClient, path: str, payload: dict[str, Any]) -> Any:
        """Async :meth:`post` through ``client`` (from :meth:`async_client`)."""
        attempt = 0
        while True:
            try:
                verdict = self._judge_response(attempt, path, await client.post(self.url(path), json=payload))
            except httpx.HTTPError as exc:
                verdict = self._judge_exception(attempt, path, exc)
            if verdict.retry_in is None:
                if verdict.error is not None:
                    raise verdict.error
                return verdict.value
            await asyncio.sleep(verdict.retry_in)
            attempt += 1

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


__all__ = ["JsonClient", "RemoteError", "env_value", "retry_after_seconds"]
