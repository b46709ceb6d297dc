"""The secret that signs file URLs: one per deployment, kept in the database's service_secrets
table, so every API process and worker, on any host, signs and verifies with the same one.

Where it comes from, first found wins:
1. RETOUCH_SIGNING_SECRET, when configured (never stored: set it on every process, or none);
2. the database;
3. made once by whichever process opens the database first: the data dir's `signing.key`,
   where an older version kept the secret (the URLs it signed stay valid), else new random
   bytes. Processes starting at once agree: each inserts only where no row exists (SQLite's
   write lock, PostgreSQL's ON CONFLICT), then reads back the one that won.
"""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import Engine, select

from retouch.jobs.database import dialect_insert, writer
from retouch.jobs.schema import service_secrets
from retouch.storage.signing import MIN_SECRET_BYTES

SIGNING_SECRET_VARIABLE = "RETOUCH_SIGNING_SECRET"
SECRET_NAME = "url_signing"
LEGACY_FILE_NAME = "signing.key"
_FIND = select(service_secrets.c.value).where(service_secrets.c.name == SECRET_NAME)

log = logging.getLogger(__name__)


class SigningSecretError(ValueError):
    """A signing secret too short or not hex: signatures made with it would be forgeable."""


def parse_secret(text: str, where: str, remedy: str) -> bytes:
    """The bytes of a hex secret of at least MIN_SECRET_BYTES; SigningSecretError otherwise."""
    try:
        secret = bytes.fromhex(text.strip())
    except ValueError:
        secret = b""
    if len(secret) < MIN_SECRET_BYTES:
        raise SigningSecretError(
            f"{where} must be a signing secret of {MIN_SECRET_BYTES} bytes "
            f"({2 * MIN_SECRET_BYTES} hex characters); {remedy}"
        )
    return secret


def load_signing_secret(engine: Engine, *, data_dir: Path, configured: SecretStr | None) -> bytes:
    """The deployment's URL-signing secret (see the module's docstring), made on first use."""
    if configured is not None:
        return parse_secret(
            configured.get_secret_value(),
            SIGNING_SECRET_VARIABLE,
            "make one with `openssl rand -hex 32`, or unset it to use the database's",
        )
    legacy = data_dir / LEGACY_FILE_NAME
    with engine.connect() as conn:
        stored = conn.execute(_FIND).scalar_one_or_none()
    if stored is None:
        adopted = _read_legacy(legacy)
        stored = _store_once(engine, adopted or secrets.token_bytes(MIN_SECRET_BYTES))
    elif legacy.exists():
        _warn_if_superseded(legacy, stored)
    return parse_secret(
        stored, f"the {SECRET_NAME!r} row of service_secrets", "delete the row to make a new one"
    )


def _read_legacy(path: Path) -> bytes | None:
    if not path.exists():
        return None
    return parse_secret(
        path.read_text(),
        str(path),
        "fix it, or delete it to have a new secret made (the URLs it signed stop working)",
    )


def _store_once(engine: Engine, secret: bytes) -> str:
    """Insert `secret` unless a secret is stored already; the stored one, whoever won."""
    insert = dialect_insert(engine.dialect.name)
    with writer(engine).begin() as conn:
        conn.execute(
            insert(service_secrets)
            .values(name=SECRET_NAME, value=secret.hex(), created_at=time.time())
            .on_conflict_do_nothing(index_elements=[service_secrets.c.name])
        )
        return str(conn.execute(_FIND).scalar_one())


def _warn_if_superseded(path: Path, stored: str) -> None:
    try:
        kept = _read_legacy(path)
    except SigningSecretError:
        kept = None
    if kept is not None and kept.hex() != stored.strip().lower():
        log.warning(
            "%s is not the deployment's signing secret (the database holds another) and is "
            "no longer read: URLs it signed no longer verify",
            path,
        )
