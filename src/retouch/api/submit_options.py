"""What a submit may ask for beside its body: `Prefer: wait=N`, an `Idempotency-Key` and a
`?webhook=` URL, each checked here with an error that names it."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import httpx

from retouch.api.errors import field_error
from retouch.contract import idempotency
from retouch.media.addresses import AddressPolicy, literal_address
from retouch.media.errors import MediaError
from retouch.storage.own_files import own_file
from retouch.storage.signing import UrlSigner

MAX_PREFER_WAIT_SECONDS = 60
MAX_WEBHOOK_URL_LENGTH = 2048


def prefer_wait(header: str | None, bare: int | None = None) -> int | None:
    """N from `Prefer: wait=N` (RFC 7240; other preferences in the header are ignored).
    `bare`: what a plain `Prefer: wait` means (Replicate's clients send it for "the longest
    wait"); None refuses it."""
    if header is None:
        return None
    for preference in header.split(","):
        name, equals, value = preference.split(";")[0].partition("=")
        if name.strip().lower() != "wait":
            continue
        if not equals and bare is not None:
            return bare
        value = value.strip().strip('"')
        # ASCII digits, and few: str.isdigit() accepts "²", and int() refuses 4,300+ digits.
        if not re.fullmatch(r"[0-9]{1,4}", value) or int(value) > MAX_PREFER_WAIT_SECONDS:
            raise field_error(
                "Prefer",
                f"wait={value[:20]!r} is not a whole number of seconds from 0 to "
                f"{MAX_PREFER_WAIT_SECONDS}: send e.g. 'Prefer: wait=30'",
                "header",
            )
        return int(value)
    return None


def idempotency_key(header: str | None) -> str | None:
    if header is None:
        return None
    if not idempotency.is_valid_key(header):
        raise field_error(idempotency.HEADER, idempotency.RULE, "header")
    return header


def webhook_url(
    url: str | None, allow: tuple[str, ...], field: str = "webhook", location: str = "query"
) -> str | None:
    """The URL when it can be delivered to. Host names are resolved and checked again at each
    delivery; an address written into the URL can be refused now, before the job runs.
    `field`, `location`: where the surface takes it from (fal's `fal_webhook` query parameter,
    Replicate's `webhook` in the body), for the 422."""
    if url is None:
        return None
    if len(url) > MAX_WEBHOOK_URL_LENGTH:
        raise field_error(field, f"longer than {MAX_WEBHOOK_URL_LENGTH} characters", location)
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise field_error(field, "must be an absolute http:// or https:// URL", location)
    # raw_host: the ASCII (IDNA) form; `.host` decodes it and raises on bad punycode.
    host = parsed.raw_host.decode("ascii")
    address = literal_address(host)
    if address is None:
        return url
    try:
        AddressPolicy(allow).check(host, [address])
    except MediaError as error:
        raise field_error(field, str(error), location) from None
    return url


def request_hash(
    endpoint: str,
    fields: dict[str, Any],
    webhook: str | None,
    signer: UrlSigner,
    surface: str | None = None,
) -> str:
    """What an idempotent retry must repeat: the validated body (so whitespace and key order do
    not matter), the endpoint, the webhook and the surface it came through. Our own file URLs
    count by the file they name, not their signature: a retry that uploaded the same file
    again has a fresh signature."""
    images = []
    for url in fields.get("image_urls", []):
        own = own_file(url, signer)
        images.append(f"file:{own.name}" if own else url)
    asked: dict[str, Any] = {
        "endpoint": endpoint,
        "input": {**fields, "image_urls": images},
        "webhook": webhook,
    }
    if surface is not None:  # the contract's own hashes as before surfaces existed
        asked["surface"] = surface
    canonical = json.dumps(
        asked,
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
