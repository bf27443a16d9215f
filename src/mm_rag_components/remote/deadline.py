"""Deadlines for blocking HTTP: every socket operation of a call ends by the call's deadline.

``httpx.Timeout`` bounds each read, so a server that sends one byte a second (headers or body)
keeps a synchronous caller forever. :func:`bounded_client` gives an ``httpx.Client`` whose
connections clamp the timeout of every connect, read, write and TLS handshake to what is left
of the deadline set by :func:`deadline` for the current thread — so the call ends, with an
``httpx`` timeout, when the deadline passes, wherever it is. Async callers need none of this:
``asyncio.wait_for`` cancels an awaited request at any point.

With ``vet``, every TCP connection (each redirect hop included) first resolves its host and asks
``vet(host, addresses)`` which addresses it may connect to (tried in order), so what is checked
is what is connected to (no second DNS answer in between): the SSRF guard of
:mod:`~mm_rag_components.remote.urls`.

Requests that go through an HTTP(S) proxy from the environment use httpx's own transport: only
the per-operation timeout and the caller's checks between chunks bound them.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx

#: The ``time.monotonic()`` by which the current thread's call must end (``None``: unbounded).
_DEADLINE: ContextVar[float | None] = ContextVar("mm_rag_http_deadline", default=None)

#: ``vet(host, [(family, address), …])`` → the addresses to try, in order, or raise to refuse.
Vet = Callable[[str, list[tuple[int, str]]], list[str]]


@contextlib.contextmanager
def deadline(at: float | None) -> Iterator[None]:
    """Bound every socket operation of :func:`bounded_client` clients in this block by ``at``
    (a ``time.monotonic()`` value; the earlier of ``at`` and an enclosing deadline wins)."""
    outer = _DEADLINE.get()
    token = _DEADLINE.set(at if outer is None else outer if at is None else min(at, outer))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def passed(at: float | None, slack: float = 0.005) -> bool:
    """Whether the deadline ``at`` has passed (``None``: never)."""
    return at is not None and time.monotonic() >= at - slack


def _clamp(timeout: float | None, error: type[Exception]) -> float | None:
    at = _DEADLINE.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise error("the call's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> httpcore.NetworkStream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, _clamp(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, vet: Vet | None) -> None:
        self._inner = httpcore.SyncBackend()
        self._vet = vet

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        timeout = _clamp(timeout, httpcore.ConnectTimeout)
        if self._vet is None:
            return _Stream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
        failure: Exception = httpcore.ConnectError(f"no address to connect to for {host!r}")
        for address in self._vet(host, [(family, str(address[0])) for family, _, _, _, address in found]):
            try:
                return _Stream(self._inner.connect_tcp(address, port, _clamp(timeout, httpcore.ConnectTimeout), local_address, socket_options))
            except httpcore.ConnectError as exc:
                failure = exc
        raise failure

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not used here")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


#: httpcore's errors as httpx's, most specific first (what ``httpx.HTTPTransport`` does).
_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout), (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout), (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException), (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError), (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError), (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError), (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError), (httpcore.ProxyError, httpx.ProxyError),
)


@contextlib.contextmanager
def _as_httpx() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for theirs, ours in _ERRORS:
            if isinstance(exc, theirs):
                raise ours(str(exc)) from exc
        raise


class _Body(httpx.SyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class BoundedTransport(httpx.BaseTransport):
    """An ``httpx`` transport over httpcore whose sockets obey :func:`deadline` (and ``vet``)."""

    def __init__(self, *, vet: Vet | None = None, trust_env: bool = True) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=trust_env), network_backend=_Backend(vet),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host, port=request.url.port,
                             target=request.url.raw_path),
            headers=request.headers.raw,
            content=request.stream,  # type: ignore[arg-type]
            extensions=request.extensions,
        )
        with _as_httpx():
            answer = self._pool.handle_request(core)
        return httpx.Response(answer.status, headers=answer.headers, stream=_Body(answer.stream), extensions=answer.extensions)

    def close(self) -> None:
        self._pool.close()


def bounded_client(*, vet: Vet | None = None, trust_env: bool = True, **options: Any) -> httpx.Client:
    """An ``httpx.Client`` whose direct connections obey :func:`deadline`; ``options`` go to
    ``httpx.Client`` (headers, timeout, follow_redirects …)."""
    return httpx.Client(transport=BoundedTransport(vet=vet, trust_env=trust_env), trust_env=trust_env, **options)


__all__ = ["BoundedTransport", "Vet", "bounded_client", "deadline", "passed"]
