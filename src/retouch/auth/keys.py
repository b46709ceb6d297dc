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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sqlalchemy import ColumnElement, Engine, bindparam, select, update

from retouch.jobs.database import writer
from retouch.jobs.schema import api_keys, jobs, uploads

KEY_PREFIX = "rtk_"
_KEY_PATTERN = re.compile(r"^rtk_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$")
# Built once: authentication runs on every request.
_FIND_KEY = select(api_keys).where(api_keys.c.id == bindparam("key_id"))

# Whose file a stored name is: an output's folder is its job's id; an upload has its row.
_JOB_OWNER = select(api_keys.c.revoked_at).join(jobs, jobs.c.key_id == api_keys.c.id)
_FILE_OF_JOB = _JOB_OWNER.where(jobs.c.id == bindparam("folder"))
_UPLOAD_OWNER = (
    select(api_keys.c.revoked_at)
    .join(uploads, uploads.c.key_id == api_keys.c.id)
    .where(uploads.c.name == bindparam("name"))
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


Role = Literal["user", "admin"]
ROLES: tuple[Role, ...] = ("user", "admin")


@dataclass(frozen=True)
class KeyLimits:
    """A key's own limits and lifetimes; None takes the server-wide default (retouch.config)."""

    max_queued: int | None = None
    max_running: int | None = None
    submit_rate: str | None = None
    """In the `limits` library's notation: "60/minute", "1000 per day"."""
    retain_results_seconds: float | None = None
    retain_uploads_seconds: float | None = None

    def __post_init__(self) -> None:
        # 0 would accept jobs that never run (or refuse every submit): None is "the default".
        for name in ("max_queued", "max_running"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or None: the server's default)")


@dataclass(frozen=True)
class KeyRecord:
    id: str
    name: str
    created_at: float
    revoked_at: float | None
    role: Role = "user"
    limits: KeyLimits = field(default_factory=KeyLimits)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @classmethod
    def from_row(cls, row: Any) -> KeyRecord:
        limits = KeyLimits(
            max_queued=row.max_queued,
            max_running=row.max_running,
            submit_rate=row.submit_rate,
            retain_results_seconds=row.retain_results_seconds,
            retain_uploads_seconds=row.retain_uploads_seconds,
        )
        role: Role = "admin" if row.role == "admin" else "user"
        return cls(row.id, row.name, row.created_at, row.revoked_at, role, limits)


# A verdict on a key is reused this long, so a poll does not read the key table each time;
# a revoked key therefore stops working within this many seconds.
AUTH_CACHE_SECONDS = 1.0
AUTH_CACHE_ENTRIES = 10_000


class KeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # sha256(key) -> (key id or None, monotonic time the verdict expires)
        self._verdicts: dict[str, tuple[str | None, float]] = {}
        # key id -> (its record, monotonic time it expires): roles and limits, read with the
        # verdict, so a submit or an admin route reads no key row either.
        self._records: dict[str, tuple[KeyRecord, float]] = {}
        # storage folder -> (its owner is revoked, monotonic time it expires)
        self._file_owners: dict[str, tuple[bool, float]] = {}

    def create(
        self, name: str, *, role: Role = "user", limits: KeyLimits | None = None
    ) -> tuple[KeyRecord, str]:
        key_id, key = new_key()
        record = KeyRecord(
            id=key_id,
            name=name,
            created_at=time.time(),
            revoked_at=None,
            role=role,
            limits=limits or KeyLimits(),
        )
        with writer(self.engine).begin() as conn:
            conn.execute(
                api_keys.insert().values(
                    id=key_id,
                    name=name,
                    key_hash=hash_key(key),
                    created_at=record.created_at,
                    role=role,
                    **asdict(record.limits),
                )
            )
        return record, key

    def edit(self, id_or_name: str, *, role: Role | None = None, **limits: Any) -> list[KeyRecord]:
        """Change the role or limits (KeyLimits' fields; a value of None restores the server
        default) of the key with this id, or of every active key with this name. Takes effect
        within AUTH_CACHE_SECONDS in every process."""
        unknown = set(limits) - set(KeyLimits.__dataclass_fields__)
        if unknown:
            raise TypeError(f"not a key limit: {', '.join(sorted(unknown))}")
        KeyLimits(**limits)  # the same checks as a new key's
        values = dict(limits) | ({} if role is None else {"role": role})
        with writer(self.engine).begin() as conn:
            matched = self._active(conn, id_or_name)
            if values and matched:
                conn.execute(update(api_keys).where(api_keys.c.id.in_(matched)).values(**values))
            rows = conn.execute(select(api_keys).where(api_keys.c.id.in_(matched))).all()
        return [KeyRecord.from_row(row) for row in rows]

    @staticmethod
    def _active(conn: Any, id_or_name: str) -> list[str]:
        """The ids of the active key with this id, or of every active key with this name."""
        return list(
            conn.execute(
                select(api_keys.c.id).where(
                    (api_keys.c.id == id_or_name) | (api_keys.c.name == id_or_name),
                    api_keys.c.revoked_at.is_(None),
                )
            ).scalars()
        )

    def list_keys(self) -> list[KeyRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at)).all()
        return [KeyRecord.from_row(row) for row in rows]

    def count(self) -> int:
        return len(self.list_keys())

    def revoke(
        self, id_or_name: str, *, with_their_work: Callable[[Any, list[str]], None] | None = None
    ) -> list[KeyRecord]:
        """Revoke the key with this id, or every active key with this name. `with_their_work`
        is called with the transaction's connection and the revoked ids, so what ends with
        the keys (their queued jobs, their webhooks: SqlJobStore.end_work_of_revoked) ends
        atomically with them. Every API process refuses them within AUTH_CACHE_SECONDS."""
        now = time.time()
        with writer(self.engine).begin() as conn:
            matched = self._active(conn, id_or_name)
            conn.execute(update(api_keys).where(api_keys.c.id.in_(matched)).values(revoked_at=now))
            if with_their_work is not None:
                with_their_work(conn, matched)
            rows = conn.execute(select(api_keys).where(api_keys.c.id.in_(matched))).all()
        return [KeyRecord.from_row(row) for row in rows]

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

    def record(self, key_id: str) -> KeyRecord | None:
        """The key's record (role, limits), at most AUTH_CACHE_SECONDS old; None when there
        is no such key. Blocking when not cached (a database read)."""
        cached = self._records.get(key_id)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        with self.engine.connect() as conn:
            row = conn.execute(_FIND_KEY, {"key_id": key_id}).one_or_none()
        return None if row is None else self._remember(KeyRecord.from_row(row), now)

    def cached_record(self, key_id: str) -> KeyRecord | None:
        """The key's record when a fresh one is cached (authenticate caches it), else None."""
        cached = self._records.get(key_id)
        return cached[0] if cached is not None and cached[1] > time.monotonic() else None

    def _remember(self, record: KeyRecord, now: float) -> KeyRecord:
        if len(self._records) >= AUTH_CACHE_ENTRIES:
            self._records.clear()
        self._records[record.id] = (record, now + AUTH_CACHE_SECONDS)
        return record

    def owner_revoked(self, name: str) -> bool:
        """Whether the stored file `name` belongs to a revoked key (its signed URLs then
        answer 403). Cached per folder like verdicts, so a revocation reaches every process
        within AUTH_CACHE_SECONDS. Blocking on a cache miss."""
        folder = name.partition("/")[0]
        now = time.monotonic()
        cached = self._file_owners.get(folder)
        if cached is not None and cached[1] > now:
            return cached[0]
        with self.engine.connect() as conn:
            found = conn.execute(_FILE_OF_JOB, {"folder": folder}).first()
            if found is None:
                found = conn.execute(_UPLOAD_OWNER, {"name": name}).first()
        revoked = found is not None and found.revoked_at is not None
        if len(self._file_owners) >= AUTH_CACHE_ENTRIES:
            self._file_owners.clear()
        self._file_owners[folder] = (revoked, now + AUTH_CACHE_SECONDS)
        return revoked

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
        if not hmac.compare_digest(row.key_hash, digest):
            return None
        self._remember(KeyRecord.from_row(row), time.monotonic())
        return str(row.id)
