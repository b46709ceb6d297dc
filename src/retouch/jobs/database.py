"""Opening the database: the SQLAlchemy engine (SQLite with its durability settings, or
PostgreSQL through psycopg 3), and the migrations that create or upgrade the schema."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, Engine, create_engine, event, make_url, select
from sqlalchemy import func as sql_func
from sqlalchemy.exc import ArgumentError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
WRITE_OPTION = "retouch_write"
DATABASE_URL_VARIABLE = "RETOUCH_DATABASE_URL"
POSTGRES_DRIVER = "postgresql+psycopg"

# An API process uses connections from its route threads (anyio's pool runs up to 40 sync
# routes at once), the webhook dispatcher and the change feed, each briefly: 10 stay open,
# up to 30 more are opened under a burst and closed when returned.
POSTGRES_POOL_SIZE = 10
POSTGRES_MAX_OVERFLOW = 30
POSTGRES_POOL_TIMEOUT_SECONDS = 10.0
# No statement of ours takes long; one that waits this long (a lock held by a stuck
# transaction, an overloaded server) fails instead of holding a route or a worker forever.
POSTGRES_STATEMENT_TIMEOUT_SECONDS = 30.0
# Taken inside the migration transaction: several processes starting at once migrate one
# after the other, and the later ones find nothing to do. Any fixed 64-bit number would do.
MIGRATION_LOCK_ID = 0x7265746F756368  # "retouch"


class DatabaseUrlError(ValueError):
    """RETOUCH_DATABASE_URL names a database Retouch cannot open."""


def parse_database_url(url: str) -> URL:
    """The URL, checked to be one Retouch opens: sqlite:///PATH or postgresql+psycopg://…"""
    try:
        parsed = make_url(url)
    except ArgumentError:
        parsed = None
    if parsed is not None and parsed.drivername == "sqlite" and parsed.database:
        return parsed
    if parsed is not None and parsed.drivername == POSTGRES_DRIVER:
        return parsed
    shown = parsed.render_as_string(hide_password=True) if parsed is not None else repr(url)
    raise DatabaseUrlError(
        f"{DATABASE_URL_VARIABLE} must be sqlite:///PATH or "
        f"{POSTGRES_DRIVER}://USER:PASSWORD@HOST:PORT/DATABASE, not {shown}"
    )


def open_engine(
    url: str, *, statement_timeout_seconds: float = POSTGRES_STATEMENT_TIMEOUT_SECONDS
) -> Engine:
    """An engine on a sqlite:/// or postgresql+psycopg:// URL (DatabaseUrlError otherwise)."""
    parsed = parse_database_url(url)
    if parsed.drivername == "sqlite":
        return open_sqlite(Path(str(parsed.database)))
    return open_postgres(parsed, statement_timeout_seconds=statement_timeout_seconds)


# Switching a new file to WAL needs its exclusive lock, and SQLite answers "database is
# locked" at once instead of waiting on the busy timeout when processes open the same new
# file together; once the file is in WAL mode (which persists) the pragma takes no lock.
WAL_SWITCH_SECONDS = 30.0


def _enter_wal(cursor: sqlite3.Cursor) -> None:
    deadline = time.monotonic() + WAL_SWITCH_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def open_sqlite(path: Path) -> Engine:
    """An engine on a SQLite file in WAL mode that fsyncs every commit.

    Transactions are begun by us, not by the sqlite3 module: writers take `BEGIN IMMEDIATE`
    (engine.execution_options(retouch_write=True)) so two writers queue on the busy timeout
    instead of failing with "database is locked" when a read lock is upgraded.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"timeout": 30.0, "check_same_thread": False},
        pool_size=8,
        max_overflow=16,
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        _enter_wal(cursor)
        # FULL: fsync the WAL on every commit, so an acknowledged submit survives power loss.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # Reads run in sqlite3's autocommit mode: one SELECT is its own consistent snapshot,
        # and skipping BEGIN/ROLLBACK halves the cost of a status poll.
        if connection.get_execution_options().get(WRITE_OPTION, False):
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def open_postgres(url: URL, *, statement_timeout_seconds: float) -> Engine:
    """An engine on PostgreSQL (psycopg 3), pooled for an API process, whose statements give
    up after the timeout. Concurrency is PostgreSQL's own (row locks, SKIP LOCKED): the
    writer() option means nothing here."""
    milliseconds = max(1, round(statement_timeout_seconds * 1000))
    return create_engine(
        url,
        pool_size=POSTGRES_POOL_SIZE,
        max_overflow=POSTGRES_MAX_OVERFLOW,
        pool_timeout=POSTGRES_POOL_TIMEOUT_SECONDS,
        # A connection the server dropped (restart, failover, idle timeout) is replaced at
        # checkout instead of failing the request that drew it.
        pool_pre_ping=True,
        connect_args={"options": f"-c statement_timeout={milliseconds}"},
    )


def writer(engine: Engine) -> Engine:
    """The same engine, whose transactions take the write lock at BEGIN (SQLite; on
    PostgreSQL the option is ignored and the engine behaves as itself)."""
    return engine.execution_options(**{WRITE_OPTION: True})


def migration_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def newest_revision() -> str | None:
    """The revision a migrated database is at."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(migration_config()).get_current_head()


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to the newest revision. Safe when several processes start
    at once: a lock (SQLite's write lock, PostgreSQL's advisory lock) serialises them and the
    later ones find nothing to do."""
    config = migration_config()
    with writer(engine).begin() as connection:
        if engine.dialect.name == "postgresql":
            # Released at commit; PostgreSQL's DDL is transactional, so a later process sees
            # either no tables or all of them, and the newest alembic_version.
            connection.execute(select(sql_func.pg_advisory_xact_lock(MIGRATION_LOCK_ID)))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
