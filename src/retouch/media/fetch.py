"""Fetch an input image from an untrusted URL (http, https or data:) without becoming an SSRF
proxy: every hop is resolved once, checked, and then connected to by the checked address."""

from __future__ import annotations

import asyncio
import base64
import binascii
import urllib.parse
from dataclasses import dataclass
from typing import Final

import httpx

from retouch.media.addresses import AddressPolicy
from retouch.media.errors import MediaError
from retouch.media.pinned import (
    describe_url,
    parse_http_url,
    pinned_client,
    resolve,
    send_pinned,
    transport_reason,
)

_SCHEMES: Final = "http, https or data"
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
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
    current = parse_http_url(url, schemes=_SCHEMES)
    timeout = httpx.Timeout(
        connect=config.connect_timeout,
        read=config.read_timeout,
        write=config.read_timeout,
        pool=config.connect_timeout,
    )
    headers = {
        "User-Agent": config.user_agent,
        "Accept": "image/*",
        # Images are already compressed; asking for identity avoids gzip bombs.
        "Accept-Encoding": "identity",
    }
    async with pinned_client(timeout) as client:
        redirects = 0
        try:
            while True:
                addresses = await resolve(current, policy, config.connect_timeout)
                response = await send_pinned(client, "GET", current, addresses, headers)
                try:
                    if response.status_code not in _REDIRECT_STATUSES:
                        if not response.is_success:
                            raise MediaError(
                                f"HTTP {response.status_code} from {describe_url(current)}"
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


def _redirect_target(current: httpx.URL, response: httpx.Response) -> httpx.URL:
    location = response.headers.get("location")
    if not location:
        raise MediaError(
            f"HTTP {response.status_code} redirect without a Location from {describe_url(current)}"
        )
    try:
        target = current.join(location)
    except httpx.InvalidURL:
        raise MediaError(f"redirect to an invalid URL from {describe_url(current)}") from None
    return parse_http_url(str(target), prefix="redirect to ", schemes=_SCHEMES)


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
    reason = transport_reason(
        error,
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        action="fetch",
    )
    if redirected_to is not None:
        reason += f" (after a redirect to {describe_url(redirected_to)})"
    return MediaError(reason)


def _format_size(size: int) -> str:
    for unit, scale in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"
