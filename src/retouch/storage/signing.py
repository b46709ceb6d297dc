"""HMAC-signed, expiring output URLs. The secret is one per deployment (signing_secret.py)."""

from __future__ import annotations

import hashlib
import hmac
import time

MIN_SECRET_BYTES = 32


class UrlSigner:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _signature(self, name: str, expires: int) -> str:
        message = f"{name}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def sign(self, name: str, ttl_seconds: int) -> tuple[int, str]:
        expires = int(time.time()) + ttl_seconds
        return expires, self._signature(name, expires)

    def verify(self, name: str, expires: int, signature: str) -> bool:
        return expires >= time.time() and self.is_signed(name, expires, signature)

    def is_signed(self, name: str, expires: int, signature: str) -> bool:
        """Whether `signature` is ours for `name` and `expires`, expired or not: an expired URL
        of ours can then be told apart from a forged one. Compared as bytes: compare_digest
        raises TypeError on a str with non-ASCII characters, which a client can send."""
        return hmac.compare_digest(self._signature(name, expires).encode(), signature.encode())
