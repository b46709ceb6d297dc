"""Fetch an input image from an untrusted URL (http, https or data:) without becoming an SSRF
proxy: every hop is resolved once, checked, and then connected to by the checked address."""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import os
import socket
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Final

import httpx

from retouch.media.addresses import AddressPolicy, IPAddress
from retouch.media.errors import MediaError

_HTTP_SCHEMES: Final = frozenset({"http", "https"})
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_MAX_URL_IN_MESSAGE: Final = 200
_ASCII_WHITESPACE: Final = b" \t\n\r\f\v"


@dataclass(frozen=True)
class FetchConfig:
    """Limits for one fetch. `allow`: RETOUCH_FETCH_ALLOW entries (hosts, IPs, CIDRs); times in
    seconds; `total_timeout` bounds the whole fetch, redirects and DNS included."""

    allow: tuple[str, ...] = ()
    max_bytes: int = 50 * 1024 * 1024
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    total_timeout: float = 60.0
    max_redirects: int = 3
    user_agent: str = "Retouch/0.1"


async def fetch_bytes(url: str, config: FetchConfig) -> bytes:
    """The body at `url`, at most `config.max_bytes` long; MediaError with a reason otherwise."""
    if url[:5].lower() == "data:":
        return _decode_data_uri(url, config.max_bytes)
    try:
        async with asyncio.timeout(config.total_timeout):
            return await _fetch_http(url, config)
    except TimeoutError:
        # Per-read timeouts do not bound a server that trickles a byte every few seconds.
        raise MediaError(f"timed out after {config.total_timeout:g} s overall") from None


# --- data: URIs -------------------------------------------------------------------------------


def _decode_data_uri(url: str, max_bytes: int) -> bytes:
    # RFC 2397 is small enough to parse here; urllib's DataHandler would need a whole opener.
    # Messages never echo the payload: it can be megabytes long.
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise MediaError("data: URI has no comma before its data")
    media_type, *params = (part.strip() for part in header.split(";"))
    media_type = media_type.lower()
    if media_type and not media_type.startswith("image/"):
        raise MediaError(f"data: URI has media type {media_type[:50]!r}, not image/*")
    # Base64 payloads sometimes arrive percent-encoded too ("%2B" for "+"): undo that first.
    raw = urllib.parse.unquote_to_bytes(payload)
    if params and params[-1].lower() == "base64":
        compact = raw.translate(None, _ASCII_WHITESPACE)
        try:
            # Tolerate missing padding, as browsers do; reject any other stray character.
            data = base64.b64decode(compact + b"=" * (-len(compact) % 4), validate=True)
        except binascii.Error:
            raise MediaError("data: URI is not valid base64") from None
    else:
        data = raw
    if len(data) > max_bytes:
        raise MediaError(f"larger than {_format_size(max_bytes)}")
    return data


# --- http(s) ----------------------------------------------------------------------------------


async def _fetch_http(url: str, config: FetchConfig) -> bytes:
    policy = AddressPolicy(config.allow)
    current = _parse_http_url(url, redirect=False)
    timeout = httpx.Timeout(
        connect=config.connect_timeout,
        read=config.read_timeout,
        write=config.read_timeout,
        pool=config.connect_timeout,
    )
    async with httpx.AsyncClient(
        timeout=timeout,
        follow_redirects=False,  # each hop must be re-checked before we connect to it
        trust_env=False,  # a proxy from the environment would connect by name, undoing the pin
        # No keep-alive: a pooled connection is keyed by IP, and could be reused by a later hop
        # to another name on that IP under the first name's TLS session.
        limits=httpx.Limits(max_keepalive_connections=0),
    ) as client:
        redirects = 0
        try:
            while True:
                addresses = await _resolve(current, policy, config.connect_timeout)
                response = await _send_pinned(client, current, addresses, config.user_agent)
                try:
                    if response.status_code not in _REDIRECT_STATUSES:
                        if not response.is_success:
                            raise MediaError(
                                f"HTTP {response.status_code} from {_describe_url(current)}"
                            )
                        return await _read_capped(response, config.max_bytes)
                    if redirects >= config.max_redirects:
                        raise MediaError(f"too many redirects (more than {config.max_redirects})")
                    current = _redirect_target(current, response)
                    redirects += 1
                    # Cookies are keyed by the pinned IP here, so they could leak between names.
                    client.cookies.clear()
                finally:
                    await response.aclose()
        except httpx.HTTPError as error:
            raise _transport_error(error, config, current if redirects else None) from error


def _parse_http_url(url: str, *, redirect: bool) -> httpx.URL:
    where = "redirect to " if redirect else ""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise MediaError(f"{where}not a valid URL: {_describe_url(url)}") from None
    if not parsed.scheme:
        raise MediaError(f"{where}URL has no scheme: use http, https or data")
    if parsed.scheme not in _HTTP_SCHEMES:
        raise MediaError(
            f"{where}unsupported URL scheme {parsed.scheme[:20]!r}: use http, https or data"
        )
    if not parsed.raw_host:
        raise MediaError(f"{where}URL has no host: {_describe_url(url)}")
    return parsed


async def _resolve(url: httpx.URL, policy: AddressPolicy, timeout: float) -> list[IPAddress]:
    """Look the host up once and check every answer, before anything connects."""
    host = url.raw_host.decode("ascii")  # IDNA-encoded by httpx, brackets already stripped
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        async with asyncio.timeout(timeout):
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
    except TimeoutError:
        raise MediaError(f"timed out after {timeout:g} s while looking up {host}") from None
    except (socket.gaierror, UnicodeError):
        raise MediaError(f"not reachable: host {host} not found") from None
    # dict.fromkeys: drop duplicates but keep the resolver's preference order.
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    policy.check(host, addresses)
    return addresses


async def _send_pinned(
    client: httpx.AsyncClient, url: httpx.URL, addresses: list[IPAddress], user_agent: str
) -> httpx.Response:
    """Send the GET to the checked addresses themselves, trying them in order, so a second DNS
    lookup (rebinding) never gets a say. The name stays in Host and in TLS SNI/verification."""
    headers = {
        "Host": url.netloc.decode("ascii"),
        "User-Agent": user_agent,
        "Accept": "image/*",
        # Images are already compressed; asking for identity avoids gzip bombs.
        "Accept-Encoding": "identity",
    }
    extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
    last_error: httpx.TransportError | None = None
    for address in addresses:
        request = client.build_request(
            "GET", url.copy_with(host=str(address)), headers=headers, extensions=extensions
        )
        try:
            return await client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            last_error = error
    assert last_error is not None  # AddressPolicy.check refuses an empty address list
    raise last_error


def _redirect_target(current: httpx.URL, response: httpx.Response) -> httpx.URL:
    location = response.headers.get("location")
    if not location:
        raise MediaError(
            f"HTTP {response.status_code} redirect without a Location from {_describe_url(current)}"
        )
    try:
        target = current.join(location)
    except httpx.InvalidURL:
        raise MediaError(f"redirect to an invalid URL from {_describe_url(current)}") from None
    return _parse_http_url(str(target), redirect=True)


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    too_large = MediaError(f"larger than {_format_size(max_bytes)}")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large  # refuse before reading a byte of it
    # The declared length can lie (or be absent): count what actually arrives and stop early.
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    return bytes(body)


# --- messages ---------------------------------------------------------------------------------


def _transport_error(
    error: httpx.HTTPError, config: FetchConfig, redirected_to: httpx.URL | None
) -> MediaError:
    if isinstance(error, httpx.ConnectTimeout):
        reason = f"timed out after {config.connect_timeout:g} s while connecting"
    elif isinstance(error, httpx.ReadTimeout):
        reason = f"timed out after {config.read_timeout:g} s while reading"
    elif isinstance(error, httpx.TimeoutException):
        reason = f"timed out after {config.read_timeout:g} s while sending the request"
    elif isinstance(error, httpx.ConnectError):
        reason = f"not reachable: {_root_cause(error)}"
    elif isinstance(error, httpx.RemoteProtocolError):
        reason = "the server closed the connection early or sent a malformed response"
    elif isinstance(error, httpx.ReadError):
        reason = f"connection broke while reading: {_root_cause(error)}"
    else:
        reason = f"fetch failed: {_root_cause(error)}"
    if redirected_to is not None:
        reason += f" (after a redirect to {_describe_url(redirected_to)})"
    return MediaError(reason)


def _root_cause(error: BaseException) -> str:
    """A short reason from the exception chain: httpx wraps httpcore wraps the OSError."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"TLS certificate not accepted ({seen.verify_message})"
        if isinstance(seen, ssl.SSLError):
            return f"TLS handshake failed ({seen.reason or seen.__class__.__name__})"
        if isinstance(seen, OSError) and seen.errno:
            # asyncio's strerror reads "Connect call failed (...)"; the errno says what happened.
            return os.strerror(seen.errno).lower()
        seen = seen.__cause__ or seen.__context__
    return str(error)[:_MAX_URL_IN_MESSAGE] or error.__class__.__name__


def _describe_url(url: httpx.URL | str) -> str:
    """The URL for a message: without credentials, and short."""
    if isinstance(url, httpx.URL) and url.userinfo:
        url = url.copy_with(username=None, password=None)
    text = str(url)
    if len(text) <= _MAX_URL_IN_MESSAGE:
        return text
    return text[: _MAX_URL_IN_MESSAGE - 1] + "…"


def _format_size(size: int) -> str:
    for unit, scale in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"
