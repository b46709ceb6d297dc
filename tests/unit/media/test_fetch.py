"""fetch_bytes against a local threaded HTTP server: limits, redirects, refusals, data: URIs."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import http.server
import io
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import certifi
import httpx
import pytest
from PIL import Image

from retouch.media.errors import MediaError
from retouch.media.fetch import FetchConfig, fetch_bytes


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 10, 10)).save(buffer, "PNG")
    return buffer.getvalue()


IMAGE = _png()
# Set at teardown so handlers that stall or trickle give up instead of outliving the test.
RELEASE = threading.Event()


class Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.0: a body without Content-Length ends when the connection closes.
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _send(self, body: bytes, *, status: int = 200, length: int | None = None) -> None:
        self._head(status, {"Content-Length": str(len(body) if length is None else length)})
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self._head(302, {"Location": location, "Content-Length": "0"})

    def do_GET(self) -> None:
        path = self.path
        try:
            if path == "/image.png":
                self._send(IMAGE)
            elif path == "/echo-host":
                self._send(self.headers.get("Host", "").encode())
            elif path.startswith("/hop/"):
                # /hop/N takes N redirects (relative Locations) before the image.
                left = int(path.removeprefix("/hop/"))
                if left:
                    self._redirect(f"/hop/{left - 1}")
                else:
                    self._send(IMAGE)
            elif path == "/to-metadata":
                self._redirect("http://169.254.169.254/latest/meta-data/")
            elif path == "/to-file":
                self._redirect("file:///etc/passwd")
            elif path == "/to-decimal":
                self._redirect("http://2130706433/")
            elif path == "/no-location":
                self._head(302, {"Content-Length": "0"})
            elif path == "/big":
                self._head(200, {})  # no Content-Length: only counting can stop it
                self.wfile.write(b"x" * 5000)
            elif path == "/endless":
                self._head(200, {})
                for _ in range(2000):  # ~128 MB if nobody stops reading
                    self.wfile.write(b"x" * 65536)
            elif path == "/declared-big":
                self._send(b"tiny", length=10**9)
            elif path == "/short":
                self._send(b"0123456789", length=100)  # promises 100, sends 10, closes
            elif path == "/stall":
                self._head(200, {"Content-Length": "10"})
                self.wfile.flush()
                RELEASE.wait(5)
            elif path == "/trickle":
                self._head(200, {})
                while not RELEASE.wait(0.05):
                    self.wfile.write(b"x")
                    self.wfile.flush()
            else:
                self._send(b"not here", status=404)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on purpose: the size cap or a timeout


def _serve(server: http.server.ThreadingHTTPServer, authority: str) -> Iterator[str]:
    """Run `server` in a thread; yields its base URL, `authority` being how URLs name its host."""
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://{authority}:{server.server_address[1]}"
    RELEASE.set()
    server.shutdown()
    server.server_close()
    RELEASE.clear()


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    yield from _serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler), "127.0.0.1")


class V6Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


@pytest.fixture(scope="module")
def base_v6() -> Iterator[str]:
    try:
        server = V6Server(("::1", 0), Handler)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    yield from _serve(server, "[::1]")


LOCAL = FetchConfig(allow=("127.0.0.1",), max_bytes=1000, read_timeout=2.0, total_timeout=5.0)


def fetch(url: str, **overrides: Any) -> bytes:
    return asyncio.run(fetch_bytes(url, dataclasses.replace(LOCAL, **overrides)))


def refusal(url: str, **overrides: Any) -> str:
    with pytest.raises(MediaError) as caught:
        fetch(url, **overrides)
    return str(caught.value)


@pytest.fixture
def sent_to(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hosts that requests actually reached the transport for (that is, connected to)."""
    hosts: list[str] = []
    original = httpx.AsyncHTTPTransport.handle_async_request

    async def recording(self: httpx.AsyncHTTPTransport, request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return await original(self, request)

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", recording)
    return hosts


# --- http(s) ----------------------------------------------------------------------------------


def test_fetches_an_image(base: str) -> None:
    assert fetch(f"{base}/image.png") == IMAGE


def test_http_error_status(base: str) -> None:
    assert refusal(f"{base}/missing") == f"HTTP 404 from {base}/missing"


def test_long_url_and_credentials_stay_out_of_messages(base: str) -> None:
    port = base.rsplit(":", 1)[1]
    message = refusal(f"http://user:secret@127.0.0.1:{port}/{'a' * 5000}")
    assert message.startswith("HTTP 404 from http://127.0.0.1:")
    assert "secret" not in message
    assert len(message) < 250


def test_follows_redirect_chain(base: str, sent_to: list[str]) -> None:
    assert fetch(f"{base}/hop/3") == IMAGE
    assert len(sent_to) == 4


def test_too_many_redirects(base: str) -> None:
    assert refusal(f"{base}/hop/4") == "too many redirects (more than 3)"
    assert refusal(f"{base}/hop/2", max_redirects=1) == "too many redirects (more than 1)"


def test_redirect_to_metadata_refused_before_connecting(base: str, sent_to: list[str]) -> None:
    started = time.monotonic()
    message = refusal(f"{base}/to-metadata")
    assert message.startswith("refused address 169.254.169.254 (cloud metadata) for host")
    assert sent_to == ["127.0.0.1"]  # only the first hop ever reached a socket
    assert time.monotonic() - started < 1


def test_redirect_to_other_scheme_refused(base: str) -> None:
    assert refusal(f"{base}/to-file").startswith("redirect to unsupported URL scheme 'file'")


def test_redirect_to_decimal_host_refused(base: str, sent_to: list[str]) -> None:
    # The first hop is allowed by its name; the next hop's name is not, so its address decides.
    port = base.rsplit(":", 1)[1]
    message = refusal(f"http://localhost:{port}/to-decimal", allow=("localhost",))
    assert message.startswith("refused address 127.0.0.1 (loopback) for host 2130706433:")
    assert sent_to == ["127.0.0.1"]


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "127.1", "0"])
def test_numeric_host_forms_refused(host: str, sent_to: list[str]) -> None:
    # An input image_url is resolved before the fetch: every form the resolver reads as IPv4
    # is checked as the address it is.
    assert refusal(f"http://{host}:9/", allow=()).startswith("refused address ")
    assert sent_to == []


def test_redirect_without_location(base: str) -> None:
    assert "redirect without a Location" in refusal(f"{base}/no-location")


def test_body_over_cap_without_length(base: str) -> None:
    assert refusal(f"{base}/big") == "larger than 1000 bytes"
    assert fetch(f"{base}/big", max_bytes=5000) == b"x" * 5000


def test_endless_body_stops_at_cap(base: str) -> None:
    started = time.monotonic()
    assert refusal(f"{base}/endless", max_bytes=200_000) == "larger than 195.312 KB"
    assert time.monotonic() - started < 2


def test_declared_length_over_cap_refused_early(base: str) -> None:
    assert refusal(f"{base}/declared-big") == "larger than 1000 bytes"


def test_default_cap_message(base: str) -> None:
    assert refusal(f"{base}/declared-big", max_bytes=FetchConfig().max_bytes) == "larger than 50 MB"


def test_content_length_lie(base: str) -> None:
    assert "closed the connection early" in refusal(f"{base}/short")


def test_stalled_response_times_out(base: str) -> None:
    started = time.monotonic()
    assert refusal(f"{base}/stall", read_timeout=0.3) == "timed out after 0.3 s while reading"
    assert time.monotonic() - started < 2


def test_trickling_response_hits_total_deadline(base: str) -> None:
    message = refusal(f"{base}/trickle", total_timeout=0.5, max_bytes=10**6)
    assert message == "timed out after 0.5 s overall"


def test_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert refusal(f"http://127.0.0.1:{port}/") == "not reachable: connection refused"


def test_loopback_refused_without_allow_list(base: str, sent_to: list[str]) -> None:
    port = base.rsplit(":", 1)[1]
    for host in ["127.0.0.1", "localhost", "2130706433", "127.1", "0x7f.1", "LocalHost"]:
        message = refusal(f"http://{host}:{port}/image.png", allow=())
        assert message.startswith("refused address 127.0.0.1 (loopback) for host"), host
    assert sent_to == []


def test_ipv6_literal_forms_refused() -> None:
    assert refusal("http://[::1]:1/", allow=()).startswith("refused address ::1 (loopback)")
    message = refusal("http://[::ffff:7f00:1]:1/", allow=())
    assert "IPv4-mapped form of 127.0.0.1" in message
    message = refusal("http://[64:ff9b::a9fe:a9fe]/", allow=())
    assert "NAT64 form of 169.254.169.254" in message


def test_ipv6_literal_host_fetches(base_v6: str) -> None:
    assert fetch(f"{base_v6}/image.png", allow=("::1",)) == IMAGE


class FakeDNS:
    """Answers for made-up names (`later` from the second lookup on); real lookups otherwise."""

    def __init__(self) -> None:
        self.first: dict[str, list[str]] = {}
        self.later: dict[str, list[str]] = {}
        self.lookups: list[str] = []
        self._real = socket.getaddrinfo

    def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in self.first:
            return self._real(host, port, *args, **kwargs)
        seen = host in self.lookups
        self.lookups.append(host)
        answer = self.later.get(host, self.first[host]) if seen else self.first[host]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)) for address in answer]


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDNS:
    fake = FakeDNS()
    monkeypatch.setattr(socket, "getaddrinfo", fake.getaddrinfo)
    return fake


def test_pins_the_checked_address(base: str, dns: FakeDNS, sent_to: list[str]) -> None:
    """DNS rebinding: the name is looked up once; later answers cannot move the connection."""
    port = base.rsplit(":", 1)[1]
    dns.first["rebind.test"] = ["127.0.0.1"]
    dns.later["rebind.test"] = ["169.254.169.254"]
    body = fetch(f"http://rebind.test:{port}/echo-host")
    assert body == f"rebind.test:{port}".encode()  # the name stays in the Host header
    assert dns.lookups == ["rebind.test"]
    assert sent_to == ["127.0.0.1"]


def test_tries_the_next_checked_address(base: str, dns: FakeDNS, sent_to: list[str]) -> None:
    port = base.rsplit(":", 1)[1]
    dns.first["two.test"] = ["127.0.0.2", "127.0.0.1"]  # nothing listens on 127.0.0.2
    assert fetch(f"http://two.test:{port}/image.png", allow=("127.0.0.0/8",)) == IMAGE
    assert sent_to == ["127.0.0.2", "127.0.0.1"]


def test_any_refused_answer_refuses_the_name(base: str, dns: FakeDNS, sent_to: list[str]) -> None:
    port = base.rsplit(":", 1)[1]
    dns.first["mixed.test"] = ["127.0.0.1", "10.0.0.1"]
    message = refusal(f"http://mixed.test:{port}/image.png")
    assert message.startswith("refused address 10.0.0.1 (private network) for host mixed.test")
    assert sent_to == []


# --- TLS: the pinned connection still verifies the certificate against the name ---------------


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for images.test (openssl CLI: no Python package makes one)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=images.test",
            "-addext",
            "subjectAltName=DNS:images.test",
            "-keyout",
            key,
            "-out",
            cert,
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_base(tls_cert: tuple[str, str]) -> Iterator[tuple[int, list[str | None]]]:
    """An https server on 127.0.0.1; yields its port and the SNI names clients sent."""
    server_names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_cert)
    context.sni_callback = lambda _sock, name, _ctx: server_names.append(name)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    for url in _serve(server, "127.0.0.1"):
        yield int(url.rsplit(":", 1)[1]), server_names


@pytest.fixture
def trust_test_cert(monkeypatch: pytest.MonkeyPatch, tls_cert: tuple[str, str]) -> None:
    # httpx builds its default context from certifi's bundle; point that at our certificate.
    monkeypatch.setattr(certifi, "where", lambda: tls_cert[0])


@pytest.mark.usefixtures("trust_test_cert")
def test_https_sends_name_as_sni_and_host(
    tls_base: tuple[int, list[str | None]], dns: FakeDNS, sent_to: list[str]
) -> None:
    port, server_names = tls_base
    dns.first["images.test"] = ["127.0.0.1"]
    assert fetch(f"https://images.test:{port}/echo-host") == f"images.test:{port}".encode()
    assert server_names[-1] == "images.test"
    assert sent_to == ["127.0.0.1"]


@pytest.mark.usefixtures("trust_test_cert")
def test_https_checks_the_certificate_against_the_name(
    tls_base: tuple[int, list[str | None]], dns: FakeDNS
) -> None:
    port, _ = tls_base
    dns.first["other.test"] = ["127.0.0.1"]
    message = refusal(f"https://other.test:{port}/image.png")
    assert message.startswith("not reachable: TLS certificate not accepted (Hostname mismatch")


def test_allow_listed_name_may_resolve_to_loopback(base: str) -> None:
    port = base.rsplit(":", 1)[1]
    assert fetch(f"http://localhost:{port}/echo-host", allow=("LOCALHOST",)) == (
        f"localhost:{port}".encode()
    )


def test_unknown_host() -> None:
    assert refusal("http://no-such-host.invalid/") == (
        "not reachable: host no-such-host.invalid not found"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://example.com/a.png", "unsupported URL scheme 'ftp': use http, https or data"),
        ("file:///etc/passwd", "unsupported URL scheme 'file': use http, https or data"),
        ("example.com/a.png", "URL has no scheme: use http, https or data"),
        ("http:///a.png", "URL has no host: http:///a.png"),
        ("http://0177.0.0.1/", "not a valid URL: http://0177.0.0.1/"),
    ],
)
def test_bad_urls(url: str, expected: str) -> None:
    assert refusal(url) == expected


# --- data: URIs -------------------------------------------------------------------------------

ENCODED = base64.b64encode(IMAGE).decode()


@pytest.mark.parametrize(
    "url",
    [
        f"data:image/png;base64,{ENCODED}",
        f"DATA:Image/PNG;BASE64,{ENCODED}",
        f"data:;base64,{ENCODED}",
        f"data:image/png;base64,{ENCODED.rstrip('=')}",  # padding dropped
        f"data:image/png;base64,{ENCODED[:40]}\n {ENCODED[40:]}",  # wrapped lines
        f"data:image/png;base64,{ENCODED.replace('+', '%2B').replace('/', '%2F')}",
    ],
)
def test_data_uri_base64(url: str) -> None:
    assert fetch(url) == IMAGE


def test_data_uri_percent_encoded() -> None:
    assert fetch("data:,%89PNG%0D%0A") == b"\x89PNG\r\n"
    assert fetch("data:image/x-raw,abc%20def") == b"abc def"


BAD_DATA: list[tuple[str, str]] = [
    ("data:text/html;base64,PHNjcmlwdD4=", "data: URI has media type 'text/html', not image/*"),
    ("data:image/svg+xml,<svg/>", ""),  # passes here; decode refuses SVG later
    ("data:image/png;base64,@@@@" + "A" * 400, "data: URI is not valid base64"),
    ("data:image/png;base64", "data: URI has no comma before its data"),
    ("data:image/png;base64," + "A" * 4000, "larger than 1000 bytes"),
]


@pytest.mark.parametrize(("url", "expected"), BAD_DATA)
def test_data_uri_refusals(url: str, expected: str) -> None:
    if not expected:
        assert fetch(url) == b"<svg/>"
        return
    message = refusal(url)
    assert message == expected
    assert "AAAA" not in message  # never echo the payload


def test_data_uri_needs_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_lookups(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("data: URIs must not touch the network")

    monkeypatch.setattr(socket, "getaddrinfo", no_lookups)
    assert fetch(f"data:image/png;base64,{ENCODED}") == IMAGE
