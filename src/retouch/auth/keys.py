"""API keys: `rtk_<id>_<secret>`. The prefix lets secret scanners spot a leaked key; the id
finds the row without using the secret; only SHA-256 of the whole key is stored, and it is
compared in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Engine, bindparam, select, update

from retouch.jobs.database import writer
from retouch.jobs.schema import api_keys

KEY_PREFIX = "rtk_"
_KEY_PATTERN = re.compile(r"^rtk_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$")
# Built once: authentication runs on every request.
_FIND_KEY = select(api_keys.c.key_hash, api_keys.c.revoked_at).where(
    api_keys.c.id == bindparam("key_id")
)

_FIND_SECRET = select(api_keys.c.webhook_secret).where(api_keys.c.id == bindparam("key_id"))


# Each key's webhook signing secret, in the Standard Webhooks form: `whsec_` and base64 of
# random bytes (the specification asks for 24 to 64).
WEBHOOK_SECRET_PREFIX = "whsec_"
WEBHOOK_SECRET_BYTES = 32


def new_webhook_secret() -> str:
    random = secrets.token_bytes(WEBHOOK_SECRET_BYTES)
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(random).decode("ascii")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """(key id, full key). The secret part carries 256 random bits."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


@dataclass(frozen=True)
class KeyRecord:
    id: str
    name: str
    created_at: float
    revoked_at: float | None


# A verdict on a key is reused this long, so a poll does not read the key table each time;
# a revoked key therefore stops working within this many seconds.
AUTH_CACHE_SECONDS = 1.0
AUTH_CACHE_ENTRIES = 10_000


class KeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # sha256(key) -> (key id or None, monotonic time the verdict expires)
        self._verdicts: dict[str, tuple[str | None, float]] = {}

    def create(self, name: str) -> tuple[KeyRecord, str]:
        key_id, key = new_key()
        record = KeyRecord(id=key_id, name=name, created_at=time.time(), revoked_at=None)
        with writer(self.engine).begin() as conn:
            conn.execute(
                api_keys.insert().values(
                    id=key_id, name=name, key_hash=hash_key(key), created_at=record.created_at
                )
            )
        return record, key

    def list_keys(self) -> list[KeyRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at)).all()
        return [KeyRecord(r.id, r.name, r.created_at, r.revoked_at) for r in rows]

    def count(self) -> int:
        return len(self.list_keys())

    def revoke(self, id_or_name: str) -> list[KeyRecord]:
        """Revoke the key with this id, or every active key with this name."""
        now = time.time()
        with writer(self.engine).begin() as conn:
            rows = conn.execute(
                select(api_keys).where(
                    (api_keys.c.id == id_or_name) | (api_keys.c.name == id_or_name),
                    api_keys.c.revoked_at.is_(None),
                )
            ).all()
            conn.execute(
                update(api_keys)
                .where(api_keys.c.id.in_([r.id for r in rows]))
                .values(revoked_at=now)
            )
        return [KeyRecord(r.id, r.name, r.created_at, now) for r in rows]

    def webhook_secret(self, key_id: str) -> str:
        """The secret that signs this key's webhooks, made on first use. KeyError: no such key."""
        with self.engine.connect() as conn:
            found = conn.execute(_FIND_SECRET, {"key_id": key_id}).one_or_none()
        if found is not None and found.webhook_secret is not None:
            return str(found.webhook_secret)
        # Only where none is set yet, under SQLite's write lock or PostgreSQL's row lock (the
        # second UPDATE waits, then finds the secret set): two first uses at once (the API
        # and a dispatcher) agree on one secret instead of each handing out its own.
        return self._set_secret(key_id, api_keys.c.webhook_secret.is_(None))

    def rotate_webhook_secret(self, key_id: str) -> str:
        """Replace the key's webhook secret; later deliveries are signed with the new one."""
        return self._set_secret(key_id)

    def _set_secret(self, key_id: str, *only_where: ColumnElement[bool]) -> str:
        with writer(self.engine).begin() as conn:
            conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, *only_where)
                .values(webhook_secret=new_webhook_secret())
            )
            found = conn.execute(_FIND_SECRET, {"key_id": key_id}).one_or_none()
        if found is None:
            raise KeyError(key_id)
        return str(found.webhook_secret)

    def cached_verdict(self, key: str) -> tuple[bool, str | None]:
        """(True, the verdict authenticate would give) when a fresh one is cached, without a
        database read; (False, None) otherwise. Lets the API skip a thread hop on a hit."""
        cached = self._verdicts.get(hash_key(key))
        if cached is not None and cached[1] > time.monotonic():
            return True, cached[0]
        return False, None

    def authenticate(self, key: str) -> str | None:
        """The key's id when the key is valid and not revoked, else None. Blocking on a cache
        miss (a database read)."""
        known, verdict = self.cached_verdict(key)
        if known:
            return verdict
        digest = hash_key(key)
        now = time.monotonic()
        verdict = self._check(key, digest)
        if len(self._verdicts) >= AUTH_CACHE_ENTRIES:
            self._verdicts.clear()
        self._verdicts[digest] = (verdict, now + AUTH_CACHE_SECONDS)
        return verdict

    def _check(self, key: str, digest: str) -> str | None:
        match = _KEY_PATTERN.match(key)
        if match is None:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(_FIND_KEY, {"key_id": match.group(1)}).one_or_none()
        if row is None or row.revoked_at is not None:
            return None
        return match.group(1) if hmac.compare_digest(row.key_hash, digest) else None
