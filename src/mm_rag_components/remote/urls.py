"""Fetch an image URL without letting it reach what it should not (SSRF), hang, or fill memory.

Used by :func:`mm_rag_components.media.read_image_bytes` when URLs are allowed. A
:class:`UrlPolicy` says what a fetch may do:

* only ``http``/``https``; redirects are followed here, at most ``max_redirects`` of them, and
  **every hop** is checked again;
* every connection resolves its host and is refused unless each address it resolves to is public:
  not private, loopback, link-local, multicast, unspecified, reserved or shared (CGNAT) — whatever
  the spelling (``2130706433``, ``0x7f.1``, ``127.1``, ``[::ffff:127.0.0.1]`` are all resolved to
  the address they mean), and the address checked is the one connected to (no second DNS
  answer in between) — unless the host or its address is in ``allow`` (host names, addresses or
  networks such as ``"10.0.0.0/8"``; ``MMRAG_URL_ALLOW`` adds a comma-separated list);
* at most ``max_bytes`` are read (after decompression), and the whole fetch, redirects included,
  ends within ``deadline`` seconds (every socket operation is bounded by it).

Fetches go straight to the host, never through an ``HTTP(S)_PROXY`` from the environment (a proxy
would reach what the checks refuse). Not covered: the time the system resolver takes.
Every failure is a :class:`~mm_rag_components.errors.MediaError`.
"""

from __future__ import annotations

import ipaddress
import os
import time
from dataclasses import dataclass
from typing import Any

import httpx

from ..errors import ConfigError, MediaError
from ..validate import integer, positive_int, positive_number
from .deadline import bounded_client, deadline, passed

#: Extra hosts / networks every default policy allows (comma-separated), for operators.
ALLOW_ENV = "MMRAG_URL_ALLOW"
#: Never public, whatever the Python version's ``ipaddress`` tables say: "this network",
#: carrier-grade NAT, IETF protocol assignments, benchmarking, reserved.
_NOT_PUBLIC = tuple(ipaddress.ip_network(n) for n in ("0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15", "240.0.0.0/4"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # IPv4 through a NAT64 gateway: the embedded address counts


@dataclass(frozen=True)
class UrlPolicy:
    """What fetching an image URL may do (see the module docstring)."""

    allow: tuple[str, ...] = ()
    max_redirects: int = 5
    max_bytes: int = 32 * 1024 * 1024
    deadline: float = 30.0
    timeout: float = 10.0

    def __post_init__(self) -> None:
        allow = (self.allow,) if isinstance(self.allow, str) else self.allow
        if not isinstance(allow, (tuple, list)) or not all(isinstance(a, str) and a.strip() for a in allow):
            raise ConfigError(f"allow must be host names, addresses or networks (strings), got {self.allow!r}")
        hosts, networks = _split(allow)
        object.__setattr__(self, "allow", tuple(allow))
        object.__setattr__(self, "_hosts", hosts)
        object.__setattr__(self, "_networks", networks)
        integer("max_redirects", self.max_redirects, minimum=0)
        positive_int("max_bytes", self.max_bytes)
        object.__setattr__(self, "deadline", positive_number("deadline", self.deadline))
        object.__setattr__(self, "timeout", positive_number("timeout", self.timeout))

    @classmethod
    def from_env(cls, **options: Any) -> UrlPolicy:
        """A policy allowing what ``MMRAG_URL_ALLOW`` lists (plus ``options``)."""
        listed = tuple(part.strip() for part in os.environ.get(ALLOW_ENV, "").split(",") if part.strip())
        return cls(allow=tuple(options.pop("allow", ())) + listed, **options)

    def allows_host(self, host: str) -> bool:
        return host.rstrip(".").lower() in self._hosts  # type: ignore[attr-defined]

    def refusal(self, address: str) -> str | None:
        """Why connecting to ``address`` is refused (``None``: allowed)."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return f"{address!r} is not an IP address"
        mapped = getattr(ip, "ipv4_mapped", None) or getattr(ip, "sixtofour", None)
        if ip.version == 6 and ip in _NAT64:
            mapped = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        for candidate in (ip, mapped) if mapped is not None else (ip,):
            if any(candidate in network for network in self._networks):  # type: ignore[attr-defined]
                return None
        kind = _kind(mapped if mapped is not None else ip)  # an embedded IPv4 address is where it goes
        return None if kind is None else f"{ip} is {kind}"

    def vet(self, host: str, addresses: list[tuple[int, str]]) -> list[str]:
        """The addresses ``host`` resolved to, to try in order — once every one is allowed (else
        a :class:`MediaError`: a name that also points inside is refused as a whole)."""
        if not addresses:
            raise MediaError(f"{host!r} resolves to no address")
        if not self.allows_host(host):
            for _, address in addresses:
                why = self.refusal(address)
                if why is not None:
                    raise MediaError(f"refusing to fetch from {host!r}: {why} (list it in UrlPolicy(allow=...) or {ALLOW_ENV} to allow it)")
        return list(dict.fromkeys(address for _, address in addresses))


def _split(allow: tuple[str, ...] | list[str]) -> tuple[frozenset[str], tuple[Any, ...]]:
    hosts, networks = set(), []
    for entry in allow:
        entry = entry.strip()
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            hosts.add(entry.rstrip(".").lower())
    return frozenset(hosts), tuple(networks)


def _kind(ip: Any) -> str | None:
    """What makes ``ip`` unfit for a fetch from outside (``None``: a public address)."""
    for test, name in (("is_loopback", "a loopback address"), ("is_unspecified", "the unspecified address"),
                       ("is_link_local", "a link-local address"), ("is_multicast", "a multicast address"),
                       ("is_private", "a private address"), ("is_reserved", "a reserved address")):
        if getattr(ip, test, False):
            return name
    if ip.version == 4 and any(ip in network for network in _NOT_PUBLIC):
        return "a special-purpose address"
    if not ip.is_global:
        return "not a global address"
    return None


def _hop(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise MediaError(f"{url[:200]!r} is not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise MediaError(f"only http(s) URLs with a host are fetched, got {url[:200]!r}")
    return parsed


def fetch(url: str, policy: UrlPolicy | None = None) -> bytes:
    """The body of ``url`` fetched under ``policy`` (default: :meth:`UrlPolicy.from_env`)."""
    policy = policy or UrlPolicy.from_env()
    at = time.monotonic() + policy.deadline
    target = _hop(url)
    with bounded_client(vet=policy.vet, trust_env=False, timeout=policy.timeout, follow_redirects=False,
                        headers={"User-Agent": "mm-rag-components"}) as client, deadline(at):
        for hop in range(policy.max_redirects + 1):
            try:
                with client.stream("GET", target) as response:
                    if response.is_redirect:
                        location = response.headers.get("Location", "")
                        target = _hop(str(response.url.join(location)))
                        continue
                    if response.status_code != 200:
                        raise MediaError(f"{url}: download failed: HTTP {response.status_code}")
                    return _body(response, url, policy)
            except httpx.TimeoutException:
                if passed(at):
                    raise MediaError(f"{url}: not downloaded within the deadline of {policy.deadline:g} s") from None
                raise MediaError(f"{url}: download failed: no data within {policy.timeout:g} s") from None
            except httpx.HTTPError as exc:
                raise MediaError(f"{url}: download failed: {type(exc).__name__}: {str(exc)[:160]}") from None
    raise MediaError(f"{url}: more than max_redirects={policy.max_redirects} redirects")


def _body(response: httpx.Response, url: str, policy: UrlPolicy) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise MediaError(f"{url}: {int(declared):,} bytes is over the download limit of {policy.max_bytes:,} bytes")
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > policy.max_bytes:
            raise MediaError(f"{url}: larger than the download limit of {policy.max_bytes:,} bytes")
    return bytes(body)


__all__ = ["ALLOW_ENV", "UrlPolicy", "fetch"]
