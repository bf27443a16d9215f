"""Image URLs once they are allowed: no fetch reaches a private, loopback, link-local, multicast or
otherwise non-public address — whatever the spelling, on any redirect hop — unless the user
lists it; redirects, bytes and time are bounded; ``data:`` URIs are capped.

The test server listens on 127.0.0.1, which every default policy refuses: the allow-list is how
these tests reach it at all."""

from __future__ import annotations

import base64
import io
import ipaddress
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mm_rag_components.errors import ConfigError, MediaError
from mm_rag_components.media import load_image, read_image_bytes
from mm_rag_components.remote.urls import ALLOW_ENV, UrlPolicy, fetch
from remote_support import FakeServer, Reply, finishes


def png(colour=(0, 128, 255)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def site(routes: dict[str, Reply]) -> FakeServer:
    """A server answering GETs from ``routes`` (path → reply); anything else is a 404."""
    return FakeServer(lambda path, body, headers: routes.get(path, Reply(404, b"no")))


def image(data: bytes | None = None, **options) -> Reply:
    return Reply(body=data or png(), content_type="image/png", **options)


def moved(location: str) -> Reply:
    return Reply(302, b"", headers={"Location": location})


LOCAL = UrlPolicy(allow=("127.0.0.1",))


def test_a_loopback_server_is_refused_unless_listed():
    with site({"/cat.png": image()}) as server:
        for url in (f"{server.url}/cat.png", f"http://localhost:{server.port}/cat.png"):
            with pytest.raises(MediaError, match="loopback"):
                finishes(lambda: load_image(url, allow_urls=True))
        assert server.requests == []  # refused before connecting
        assert load_image(f"{server.url}/cat.png", allow_urls=LOCAL).getpixel((0, 0)) == (0, 128, 255)
        assert load_image(f"http://localhost:{server.port}/cat.png", allow_urls=UrlPolicy(allow=("localhost",))).size == (4, 3)
        assert load_image(f"{server.url}/cat.png", allow_urls=UrlPolicy(allow=("127.0.0.0/8",))).size == (4, 3)


def test_the_environment_can_list_hosts_for_every_default_policy(monkeypatch):
    with site({"/cat.png": image()}) as server:
        monkeypatch.setenv(ALLOW_ENV, "intranet.example, 127.0.0.1/32")
        assert load_image(f"{server.url}/cat.png", allow_urls=True).size == (4, 3)


SPELLINGS = ["127.0.0.1", "2130706433", "0x7f.1", "0x7f.0x0.0x0.0x1", "127.1", "017700000001", "[::ffff:127.0.0.1]",
             "[::ffff:7f00:1]", "0", "0.0.0.0", "[::1]", "[::]"]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_every_redirect_hop_is_checked_whatever_the_spelling(spelling):
    """The first hop is allowed (its host name, localhost, is listed); the redirect points back
    inside through an address nobody listed."""
    with site({}) as server:
        routes = {"/start": moved(f"http://{spelling}:{server.port}/secret"), "/secret": image()}
        server.respond = lambda path, body, headers: routes.get(path, Reply(404, b"no"))
        with pytest.raises(MediaError, match="refusing to fetch"):
            finishes(lambda: fetch(f"http://localhost:{server.port}/start", UrlPolicy(allow=("localhost",))))
        assert [r.path for r in server.requests] == ["/start"]  # the first hop was fetched, the second never


@pytest.mark.parametrize("host", ["localhost", "LocalHost", "127.0.0.1", "2130706433", "[::ffff:127.0.0.1]"])
def test_the_first_hop_is_checked_too(host):
    with site({"/x.png": image()}) as server:
        with pytest.raises(MediaError, match="refusing to fetch"):
            finishes(lambda: read_image_bytes(f"http://{host}:{server.port}/x.png", allow_urls=True))
        assert server.requests == []


def test_redirects_are_followed_when_allowed_and_capped():
    with site({}) as server:
        routes = {"/a": moved("/b"), "/b": moved(f"{server.url}/c"), "/c": image(), "/loop": moved("/loop"),
                  "/file": moved("file:///etc/passwd"), "/ftp": moved("ftp://127.0.0.1/x")}
        server.respond = lambda path, body, headers: routes.get(path, Reply(404, b"no"))
        assert load_image(f"{server.url}/a", allow_urls=LOCAL).size == (4, 3)
        with pytest.raises(MediaError, match="max_redirects=5"):
            finishes(lambda: fetch(f"{server.url}/loop", LOCAL))
        assert sum(r.path == "/loop" for r in server.requests) == 6
        with pytest.raises(MediaError, match="max_redirects=1"):
            fetch(f"{server.url}/a", UrlPolicy(allow=("127.0.0.1",), max_redirects=1))
        for path in ("/file", "/ftp"):
            with pytest.raises(MediaError, match="only http"):
                fetch(f"{server.url}{path}", LOCAL)


@pytest.mark.parametrize("reply, deadline, says", [
    (image(png() + b"\0" * 5000), 30.0, "download limit"),
    (image(length=10**12), 30.0, "download limit"),
    (Reply(body=b"", content_type="image/png", forever=b"\0" * 4096), 30.0, "download limit"),
    (image(drip=0.05), 0.5, "deadline"),
    (image(drip=0.05, drip_headers=True), 0.5, "deadline"),
    (Reply(body=b"", content_type="image/png", forever=b"\0", every=0.01), 0.5, "deadline"),
    (Reply(500, b"broken"), 30.0, "HTTP 500"),
])
def test_bytes_and_time_are_bounded(reply, deadline, says):
    policy = UrlPolicy(allow=("127.0.0.1",), max_bytes=4096, deadline=deadline)
    with site({"/x.png": reply}) as server:
        with pytest.raises(MediaError, match=says):
            finishes(lambda: read_image_bytes(f"{server.url}/x.png", allow_urls=policy))


def test_data_uris_are_capped_before_decoding():
    data = png() + b"\0" * 3000
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    assert read_image_bytes(uri)[0] == data
    with pytest.raises(MediaError, match="limit of 1,024 bytes"):
        read_image_bytes(uri, max_download_bytes=1024)
    with pytest.raises(MediaError, match="limit of 1,024 bytes"):  # refused on its length alone
        read_image_bytes("data:image/png;base64," + "A" * 10_000, max_download_bytes=1024)


def test_bad_policies_and_urls_are_typed_errors():
    for bad in ({"allow": [3]}, {"allow": [""]}, {"max_redirects": -1}, {"max_bytes": 0}, {"deadline": 0}, {"timeout": -1}):
        with pytest.raises(ConfigError):
            UrlPolicy(**bad)
    with pytest.raises(ConfigError, match="allow_urls"):
        read_image_bytes("http://example.com/x.png", allow_urls="yes")  # type: ignore[arg-type]
    for url in ("http://0177.0.0.1/x", "http:///x", "http://[::1/x"):
        with pytest.raises(MediaError):
            fetch(url, UrlPolicy())


#: Networks no fetch may reach unless listed.
REFUSED = ["127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10", "0.0.0.0/8",
           "224.0.0.0/4", "240.0.0.0/4", "192.0.0.0/24", "198.18.0.0/15"]


def spellings(address: ipaddress.IPv4Address) -> list[str]:
    """The ways a URL host can write ``address`` that the resolver reads back as it."""
    value, parts = int(address), str(address).split(".")
    return [str(address), str(value), hex(value), ".".join(hex(int(p)) for p in parts), "0" + oct(value)[2:],
            f"::ffff:{address}", f"::ffff:{value >> 16:x}:{value & 0xFFFF:x}", f"2002:{value >> 16:x}:{value & 0xFFFF:x}::1",
            f"64:ff9b::{address}"]


def _resolved(host: str) -> list[tuple[int, str]]:
    return [(family, str(address[0])) for family, _, _, _, address in socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)]


@settings(max_examples=200, deadline=None)
@given(network=st.sampled_from(REFUSED), offset=st.integers(min_value=0))
def test_no_spelling_of_a_refused_address_passes(network, offset):
    net = ipaddress.ip_network(network)
    address = net[offset % net.num_addresses]
    for host in spellings(address):
        try:
            resolved = _resolved(host)
        except OSError:
            continue  # a spelling this resolver does not read: nothing could connect to it either
        with pytest.raises(MediaError, match="refusing"):
            UrlPolicy().vet(host, resolved)
        assert UrlPolicy(allow=(network,)).vet(host, resolved) == list(dict.fromkeys(a for _, a in resolved))


@settings(max_examples=100, deadline=None)
@given(value=st.integers(min_value=0, max_value=2**32 - 1))
def test_public_addresses_pass_and_the_rest_are_refused(value):
    address = ipaddress.IPv4Address(value)
    expected_refused = not address.is_global or address.is_multicast or any(address in ipaddress.ip_network(n) for n in REFUSED)
    assert (UrlPolicy().refusal(str(address)) is not None) == expected_refused
    assert (UrlPolicy().refusal(f"::ffff:{address}") is not None) == expected_refused


@pytest.mark.parametrize("address", ["::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "2001:db8::1", "::ffff:10.0.0.1",
                                     "2002:a00:1::1", "64:ff9b::a00:1", "fe80::1%eth0"])
def test_non_public_ipv6_is_refused(address):
    assert UrlPolicy().refusal(address) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "::ffff:93.184.215.14", "1.1.1.1"])
def test_public_addresses_are_allowed(address):
    assert UrlPolicy().refusal(address) is None
