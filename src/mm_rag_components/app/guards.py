"""What the web chat checks before a request reaches a route, and what every reply carries.

* **Host** (DNS rebinding): a page on ``evil.example`` whose name is re-pointed at this server
  would otherwise read its answers and images. Only the names the server was started for are
  answered (``allowed_hosts``; ``"*"`` turns the check off); IP literals and ``localhost`` always
  are, since a rebinding attack needs a name of its own.
* **Cross-site POSTs**: the API takes ``application/json`` only (a form or ``text/plain`` body —
  what another site can send without asking the browser first — is 415), and a request that
  names an ``Origin`` must come from this server's own origin (403).
* **Bodies**: a size limit (413) and a nesting limit (400), both before any parsing recursion.
* **Headers** on every reply: a Content-Security-Policy (the page runs its own inline script and
  style, by hash, and nothing else), ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``
  (and ``frame-ancestors 'none'``), ``Referrer-Policy: no-referrer`` and
  ``Cross-Origin-Resource-Policy: same-origin``.
* **Images** (:func:`verified_image`): ``/media`` serves a file only while it is still the
  regular file (not a symlink) that was ingested — same sha256 — and an image.
"""

from __future__ import annotations

import base64
import hashlib
import io
import ipaddress
import json
import os
import re
import stat
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError, MMRagError
from ..files import read_regular_file
from ..media import DEFAULT_MAX_IMAGE_BYTES

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Deepest JSON nesting a request body may have (the API's bodies are flat objects).
MAX_JSON_DEPTH = 32
_JSON_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.S)
_OPEN = frozenset(b"[{")
_DEFAULT_PORTS = {"http": "80", "https": "443"}
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}
#: The policy of every reply but the page and images (JSON): nothing runs, nothing frames it.
PLAIN_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
#: An image opened on its own: the browser's image viewer may style itself; nothing runs.
MEDIA_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


class TooLarge(ConfigError):
    """A request, question, history or upload over its limit (HTTP 413)."""


class Refused(MMRagError):
    """A request refused before any route runs: ``status`` and a short ``kind``."""

    def __init__(self, message: str, status: int, kind: str) -> None:
        super().__init__(message)
        self.status, self.kind = status, kind


def page_csp(html: str) -> str:
    """The page's Content-Security-Policy: its inline ``<script>`` and ``<style>`` by sha256, images
    from this server (and the ``data:`` preview of an upload), requests to this server only."""

    def hashes(tag: str) -> str:
        bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in bodies) or "'none'"

    return (f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; img-src 'self' data:; "
            "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")


def host_name(host: str) -> str:
    """The name in a ``Host`` header (port, brackets and a trailing dot removed, lower case)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0].rstrip(".") if host.count(":") == 1 else host.rstrip(".")


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """Whether a request with this ``Host`` header is answered (module docstring)."""
    name = host_name(host)
    allowed = [a.strip().lower().rstrip(".") for a in allowed]
    if "*" in allowed or name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    return any(name == a or (a.startswith("*.") and name.endswith(a[1:])) for a in allowed if a)


def check_allowed_hosts(hosts: Iterable[str] | None) -> tuple[str, ...]:
    """``allowed_hosts`` as a tuple of host names (``*`` or ``*.suffix`` patterns allowed)."""
    if hosts is None:
        return ()
    if isinstance(hosts, str):
        hosts = [hosts]
    out = []
    for host in hosts:
        if not isinstance(host, str) or not re.fullmatch(r"\*|(\*\.)?[A-Za-z0-9_.\-\[\]:]+", host.strip()):
            raise ConfigError(f"allowed_hosts: {host!r:.80} is not a host name (or *, or *.domain)")
        out.append(host.strip())
    return tuple(out)


def same_origin(origin: str, host: str) -> bool:
    """Whether the ``Origin`` header names the server the request was sent to (``Host``)."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return False

    def netloc(name: str, port: str | None) -> str:
        return f"{name}:{port}" if port and port != _DEFAULT_PORTS[parts.scheme] else name

    host = host.strip().lower()
    host_port = None
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        host_port = rest[1:] or None
    elif host.count(":") == 1:
        name, host_port = host.split(":")
    else:
        name = host
    origin_name = parts.hostname.lower()
    return netloc(origin_name, None if port is None else str(port)) == netloc(name.rstrip("."), host_port)


def check_request(scope: Scope, allowed_hosts: tuple[str, ...]) -> None:
    """:class:`Refused` when a request fails the Host, Origin or Content-Type rules."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    host = headers.get("host", "")
    if host and not host_allowed(host, allowed_hosts):
        raise Refused(f"this server does not answer to the host name {host_name(host)[:80]!r}; start it with "
                      "--allowed-host NAME (create_app(allowed_hosts=[...])) to allow it", 400, "bad_host")
    if scope.get("method") not in ("POST", "PUT", "PATCH", "DELETE"):
        return
    origin = headers.get("origin")
    if origin is not None and not same_origin(origin, host):
        raise Refused("cross-site requests are refused: the Origin is not this server", 403, "cross_origin")
    kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/json":
        raise Refused("the request body must be JSON (Content-Type: application/json)", 415, "unsupported_media_type")


class WebGuard:
    """ASGI middleware: :func:`check_request` on every HTTP request, :data:`SECURITY_HEADERS` and
    a Content-Security-Policy on every reply: ``policies`` maps a path (or a prefix ending in
    ``/``) to its policy, :data:`PLAIN_CSP` elsewhere."""

    def __init__(self, app: Any, *, allowed_hosts: tuple[str, ...], policies: dict[str, str]) -> None:
        self.app, self.allowed_hosts = app, allowed_hosts
        self.policies = sorted(policies.items(), key=lambda item: -len(item[0]))
        self.extra = dict(SECURITY_HEADERS)

    def policy(self, path: str) -> str:
        return next((p for where, p in self.policies if path == where or (where.endswith("/") and where != "/" and path.startswith(where))),
                    PLAIN_CSP)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self.policy(scope.get("path", ""))
        added = [(k.encode(), v.encode()) for k, v in {**self.extra, "content-security-policy": policy}.items()]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        try:
            check_request(scope, self.allowed_hosts)
        except Refused as exc:
            body = json.dumps({"error": str(exc), "kind": exc.kind}).encode()
            await with_headers({"type": "http.response.start", "status": exc.status,
                                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await with_headers({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, with_headers)


def json_depth_within(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the brackets of a JSON text (outside its strings) nest at most ``limit`` deep;
    stops at the first level past it, so a hostile body costs little."""
    depth = 0
    for token in _JSON_TOKENS.finditer(body):
        first = token.group()[0]
        if first in _OPEN:
            depth += 1
            if depth > limit:
                return False
        elif first != 0x22:  # a closing bracket (strings are skipped whole)
            depth -= 1
    return True


def parse_json_object(body: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or a :class:`ConfigError` (bad JSON, not an object,
    nested deeper than :data:`MAX_JSON_DEPTH`)."""
    if not json_depth_within(body):
        raise ConfigError(f"the request body is nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        data = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("the request body must be JSON") from exc
    except RecursionError as exc:  # not reached past the depth check; never a 500 if it were
        raise ConfigError(f"the request body is nested more than {MAX_JSON_DEPTH} levels deep") from exc
    if not isinstance(data, dict):
        raise ConfigError("the request body must be a JSON object")
    return data


def verified_image(path: object, sha256: object, *, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> tuple[bytes, str]:
    """(bytes, MIME type) of the image file at ``path`` — only a regular file, not reached
    through a symlink at that path, whose sha256 is ``sha256`` and which is an image; a
    :class:`~mm_rag_components.errors.MediaError` / :class:`ConfigError` saying why not otherwise."""
    from PIL import Image, UnidentifiedImageError

    from ..errors import MediaError

    if not isinstance(path, str) or not path or not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ConfigError("no image file with a recorded sha256")
    try:
        info = os.lstat(path)
    except (OSError, ValueError) as exc:
        raise MediaError(f"{path}: cannot be read ({exc.__class__.__name__})") from exc
    if not stat.S_ISREG(info.st_mode):
        raise MediaError(f"{path}: not a regular file (a symlink or special file now stands at the ingested path)")
    data = read_regular_file(path, max_bytes=max_bytes, limit_name="max_image_bytes")
    if hashlib.sha256(data).hexdigest() != sha256:
        raise MediaError(f"{path}: the file changed since it was ingested (sha256 differs)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = Image.MIME.get(image.format or "")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise MediaError(f"{path}: not an image") from exc
    if not kind:
        raise MediaError(f"{path}: an image of a type browsers are not sent")
    return data, kind


__all__ = ["MAX_JSON_DEPTH", "MEDIA_CSP", "PLAIN_CSP", "SECURITY_HEADERS", "Refused", "TooLarge", "WebGuard", "check_allowed_hosts",
           "check_request", "host_allowed", "json_depth_within", "page_csp", "parse_json_object", "same_origin",
           "verified_image"]
