"""Outgoing HTTP to untrusted URLs (input images, webhooks) that connects only to checked
addresses: a URL's host is resolved once, every answer is checked against the address policy,
and the request goes to the checked address itself, with the name kept in Host and TLS SNI."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import ssl
from collections.abc import Mapping
from typing import Final

import httpx

from retouch.media.addresses import AddressPolicy, IPAddress
from retouch.media.errors import MediaError

HTTP_SCHEMES: Final = frozenset({"http", "https"})
_MAX_URL_IN_MESSAGE: Final = 200


def parse_http_url(url: str, *, prefix: str = "", schemes: str = "http or https") -> httpx.URL:
    """`url` as an http(s) URL with a host; MediaError otherwise. `prefix` starts each message
    (e.g. "redirect to "), `schemes` names what the caller accepts."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise MediaError(f"{prefix}not a valid URL: {describe_url(url)}") from None
    if not parsed.scheme:
        raise MediaError(f"{prefix}URL has no scheme: use {schemes}")
    if parsed.scheme not in HTTP_SCHEMES:
        raise MediaError(f"{prefix}unsupported URL scheme {parsed.scheme[:20]!r}: use {schemes}")
    if not parsed.raw_host:
        raise MediaError(f"{prefix}URL has no host: {describe_url(url)}")
    return parsed


async def resolve(url: httpx.URL, policy: AddressPolicy, timeout: float) -> list[IPAddress]:
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


def pinned_client(timeout: httpx.Timeout) -> httpx.AsyncClient:
    """A client fit for send_pinned: it never follows a redirect on its own."""
    return httpx.AsyncClient(
        timeout=timeout,
        follow_redirects=False,  # each hop must be re-checked before we connect to it
        trust_env=False,  # a proxy from the environment would connect by name, undoing the pin
        # No keep-alive: a pooled connection is keyed by IP, and could be reused by a later
        # request to another name on that IP under the first name's TLS session.
        limits=httpx.Limits(max_keepalive_connections=0),
    )


async def send_pinned(
    client: httpx.AsyncClient,
    method: str,
    url: httpx.URL,
    addresses: list[IPAddress],
    headers: Mapping[str, str],
    content: bytes | None = None,
) -> httpx.Response:
    """Send the request to the checked addresses themselves, trying them in order, so a second
    DNS lookup (rebinding) never gets a say. The response is streamed: the caller reads what it
    needs and closes it."""
    pinned_headers = {"Host": url.netloc.decode("ascii"), **headers}
    extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
    last_error: httpx.TransportError | None = None
    for address in addresses:
        request = client.build_request(
            method,
            url.copy_with(host=str(address)),
            headers=pinned_headers,
            content=content,
            extensions=extensions,
        )
        try:
            return await client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            # Nothing was sent yet, so the next address may be tried even for a POST.
            last_error = error
    assert last_error is not None  # AddressPolicy.check refuses an empty address list
    raise last_error


# --- messages ---------------------------------------------------------------------------------


def transport_reason(
    error: httpx.HTTPError, *, connect_timeout: float, read_timeout: float, action: str
) -> str:
    """What went wrong on the wire, in words; `action` names the request ("fetch", "send")."""
    if isinstance(error, httpx.ConnectTimeout):
        return f"timed out after {connect_timeout:g} s while connecting"
    if isinstance(error, httpx.ReadTimeout):
        return f"timed out after {read_timeout:g} s while reading"
    if isinstance(error, httpx.TimeoutException):
        return f"timed out after {read_timeout:g} s while sending the request"
    if isinstance(error, httpx.ConnectError):
        return f"not reachable: {root_cause(error)}"
    if isinstance(error, httpx.RemoteProtocolError):
        return "the server closed the connection early or sent a malformed response"
    if isinstance(error, httpx.ReadError):
        return f"connection broke while reading: {root_cause(error)}"
    return f"{action} failed: {root_cause(error)}"


def root_cause(error: BaseException) -> str:
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


def describe_url(url: httpx.URL | str) -> str:
    """The URL for a message: without credentials, and short."""
    if isinstance(url, httpx.URL) and url.userinfo:
        url = url.copy_with(username=None, password=None)
    text = str(url)
    if len(text) <= _MAX_URL_IN_MESSAGE:
        return text
    return text[: _MAX_URL_IN_MESSAGE - 1] + "…"
