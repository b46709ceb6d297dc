"""HMAC-signed, expiring output URLs. The secret is made once and kept in the data dir."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

MIN_SECRET_BYTES = 32


def _read_secret(path: Path) -> bytes:
    try:
        secret = bytes.fromhex(path.read_text().strip())
    except ValueError:
        secret = b""
    if len(secret) < MIN_SECRET_BYTES:
        # A short or empty key would make signatures forgeable: refuse to run on it.
        raise ValueError(
            f"{path} does not hold a signing secret of {MIN_SECRET_BYTES} bytes (64 hex "
            "characters); delete it to have a new one made (existing URLs stop working)"
        )
    return secret


def load_or_create_secret(path: Path) -> bytes:
    """Read the signing secret, creating it (0600, written atomically) on first use."""
    if path.exists():
        return _read_secret(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(MIN_SECRET_BYTES))
        handle.flush()
        os.fsync(handle.fileno())
    try:
        # link() fails if another process won the race; then we use its secret.
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return _read_secret(path)


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
