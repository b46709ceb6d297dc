"""Databases for the store-level tests: a SQLite file per test, or PostgreSQL.

PostgreSQL: one database per test session (per xdist worker), `retouch_<random>`, created
over a connection to `test` and dropped at the end; tests empty its tables before they run.
With no server answering, PostgreSQL tests are skipped, except on CI (`CI` set), where they
fail: a CI run must not pass by testing SQLite alone.
"""

from __future__ import annotations

import os
import secrets

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import make_url

from retouch.jobs.open_store import open_store
from retouch.jobs.schema import metadata
from retouch.jobs.sql_store import SqlJobStore

# The server every machine of this project runs (see /work/shared/notes/scale-out.md).
ADMIN_URL = os.environ.get("RETOUCH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]


def open_at(url: str, *, max_attempts: int = 3) -> SqlJobStore:
    """A store on `url`, migrated, with the service's defaults."""
    return open_store(url, max_attempts=max_attempts, webhook_retry_seconds=86400.0)


class PostgresDatabases:
    """Creates databases on the test server and drops exactly those, nothing else."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []

    def create(self) -> str:
        """A new empty database; its SQLAlchemy URL."""
        name = f"retouch_{secrets.token_hex(8)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        url = make_url(self.admin_url).set(drivername="postgresql+psycopg", database=name)
        return url.render_as_string(hide_password=False)

    def drop_created(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in self.created:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        self.created.clear()


def postgres_or_skip() -> PostgresDatabases:
    try:
        psycopg.connect(ADMIN_URL, connect_timeout=3).close()
    except psycopg.OperationalError as error:
        reason = f"no PostgreSQL server answers at {ADMIN_URL}: {error}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: the PostgreSQL tests must run)")
        pytest.skip(reason)
    return PostgresDatabases(ADMIN_URL)


def psycopg_url(url: str) -> str:
    """A SQLAlchemy postgresql+psycopg:// URL as psycopg itself takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def empty_tables(url: str) -> None:
    """Every table of the schema emptied and its sequences restarted."""
    tables = sql.SQL(", ").join(sql.Identifier(t.name) for t in metadata.sorted_tables)
    with psycopg.connect(psycopg_url(url), autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(tables))
