"""Recognising our own signed file URLs (uploads and outputs), so a worker reads them from
storage instead of fetching them over HTTP: the public base URL may be unreachable from the
worker, and the address policy refuses loopback and private addresses anyway."""

from __future__ import annotations

import re
import time
import urllib.parse
from dataclasses import dataclass
from typing import Final

from retouch.storage.base import is_valid_name
from retouch.storage.signing import UrlSigner

# Only the path's end is ours: the public base URL may carry a host and a prefix of its own.
_FILE_PATH: Final = re.compile(r"/v1/files/([^/]+/[^/]+)\Z")
_EXPIRES: Final = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True)
class SignedName:
    """A file URL's storage name and its signature query, not yet verified."""

    name: str
    expires: int
    signature: str


@dataclass(frozen=True)
class OwnFile:
    """A URL we signed: the storage name it points at, and whether its signature expired."""

    name: str
    expired: bool


def parse_file_url(url: str) -> SignedName | None:
    """The parts of an http(s) URL shaped like `…/v1/files/<id>/<file>?expires=…&sig=…`;
    None for any other URL. Says nothing about who signed it."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return None
    match = _FILE_PATH.search(parts.path)
    if parts.scheme.lower() not in ("http", "https") or match is None:
        return None
    query = urllib.parse.parse_qs(parts.query)
    expires, signature = query.get("expires", []), query.get("sig", [])
    # ASCII digits only, and short: int() refuses strings of over 4300 digits.
    if len(expires) != 1 or len(signature) != 1 or not _EXPIRES.fullmatch(expires[0]):
        return None
    return SignedName(match.group(1), int(expires[0]), signature[0])


def own_file(url: str, signer: UrlSigner) -> OwnFile | None:
    """The file `url` points at when we signed it (expired or not); None when it is not one
    of ours or its signature is wrong: such a URL is fetched like any other."""
    parsed = parse_file_url(url)
    if parsed is None or not is_valid_name(parsed.name):
        return None
    if not signer.is_signed(parsed.name, parsed.expires, parsed.signature):
        return None
    return OwnFile(parsed.name, expired=parsed.expires < time.time())
