"""Opening the database: the SQLAlchemy engine (SQLite with its durability settings, or
PostgreSQL through psycopg 3), and the migrations that create or upgrade the schema."""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    URL,
    Engine,
    Float,
    Table,
    column,
    create_engine,
    event,
    make_url,
    select,
    table,
)
from sqlalchemy import func as sql_func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import ArgumentError, OperationalError

from retouch.jobs.write_lock import SerialisedWritesConnection, write_lock_for

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
# While the server is down, a request or a worker's write fails within seconds (the API
# answers 503, workers retry) instead of waiting on the operating system's TCP timeouts:
# - a connection attempt to a silent host gives up after this long (libpq's default waits
#   forever);
POSTGRES_CONNECT_TIMEOUT_SECONDS = 3
# - a pooled connection whose server vanished without closing it (a dead host, a network
#   cut) is found dead by keepalive probes after 5 + 3 x 1 s of silence, and a write left
#   unacknowledged is given up after 8 s: pool_pre_ping's ping cannot hang for minutes.
POSTGRES_KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 1,
    "keepalives_count": 3,
    "tcp_user_timeout": 8000,
}
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


@dataclass(frozen=True)
class PostgresPool:
    """How many connections a process keeps open, and how many more it opens under a burst
    (RETOUCH_DATABASE_POOL_SIZE, RETOUCH_DATABASE_POOL_OVERFLOW)."""

    size: int = POSTGRES_POOL_SIZE
    overflow: int = POSTGRES_MAX_OVERFLOW


DEFAULT_POOL = PostgresPool()


def open_engine(
    url: str,
    *,
    statement_timeout_seconds: float = POSTGRES_STATEMENT_TIMEOUT_SECONDS,
    pool: PostgresPool = DEFAULT_POOL,
) -> Engine:
    """An engine on a sqlite:/// or postgresql+psycopg:// URL (DatabaseUrlError otherwise)."""
    parsed = parse_database_url(url)
    if parsed.drivername == "sqlite":
        return open_sqlite(Path(str(parsed.database)))
    return open_postgres(parsed, statement_timeout_seconds=statement_timeout_seconds, pool=pool)


# Switching a new file to WAL needs its exclusive lock, and SQLite answers "database is
# locked" at once instead of waiting on the busy timeout when processes open the same new
# file together; once the file is in WAL mode (which persists) the pragma takes no lock.
WAL_SWITCH_SECONDS = 30.0


# How long a SQLite writer waits for the write lock (this process's, then SQLite's).
SQLITE_BUSY_SECONDS = 30.0


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


def configure_sqlite(connection: sqlite3.Connection) -> None:
    """The settings of every connection to the file: autocommit (we begin transactions, see
    open_sqlite), WAL, fsync per commit, foreign keys."""
    connection.isolation_level = None
    cursor = connection.cursor()
    _enter_wal(cursor)
    # FULL: fsync the WAL on every commit, so an acknowledged submit survives power loss.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def sqlite_reader(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection to the file, set up as the engine's are, that refuses to
    write (query_only): for the reads that skip SQLAlchemy's per-call costs."""
    connection = sqlite3.connect(path, timeout=SQLITE_BUSY_SECONDS, check_same_thread=False)
    configure_sqlite(connection)
    connection.execute("PRAGMA query_only=ON")
    return connection


def open_sqlite(path: Path) -> Engine:
    """An engine on a SQLite file in WAL mode that fsyncs every commit.

    Transactions are begun by us, not by the sqlite3 module: writers (writer(engine)) take
    this process's write lock on the file, then `BEGIN IMMEDIATE`, so the writers of one
    process queue in turn (retouch.jobs.write_lock) and those of other processes on the busy
    timeout, instead of failing with "database is locked" when a read lock is upgraded.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    factory = functools.partial(SerialisedWritesConnection, write_lock=write_lock_for(path))
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={
            "timeout": SQLITE_BUSY_SECONDS,
            "check_same_thread": False,
            "factory": factory,
        },
        # Room for every thread an API process runs store calls on (anyio's 40, the
        # dispatcher, the change feed): threads waiting for a pooled connection are not
        # served in turn, and that wait, not the write lock's, made the p99 of 32 concurrent
        # submits. Beyond 8, connections are closed when returned.
        pool_size=8,
        max_overflow=40,
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        configure_sqlite(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # Reads run in sqlite3's autocommit mode: one SELECT is its own consistent snapshot,
        # and skipping BEGIN/ROLLBACK halves the cost of a status poll.
        if not connection.get_execution_options().get(WRITE_OPTION, False):
            return
        dbapi_connection: SerialisedWritesConnection = connection.connection.dbapi_connection
        try:
            dbapi_connection.take_write_lock(SQLITE_BUSY_SECONDS)
        except sqlite3.OperationalError as error:
            raise OperationalError("BEGIN IMMEDIATE", None, error) from error
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            dbapi_connection.release_write_lock()
            raise

    return engine


def open_postgres(
    url: URL, *, statement_timeout_seconds: float, pool: PostgresPool = DEFAULT_POOL
) -> Engine:
    """An engine on PostgreSQL (psycopg 3), pooled for an API process, whose statements give
    up after the timeout. Concurrency is PostgreSQL's own (row locks, SKIP LOCKED): the
    writer() option means nothing here."""
    milliseconds = max(1, round(statement_timeout_seconds * 1000))
    return create_engine(
        url,
        pool_size=pool.size,
        max_overflow=pool.overflow,
        pool_timeout=POSTGRES_POOL_TIMEOUT_SECONDS,
        # A connection the server dropped (restart, failover, idle timeout) is replaced at
        # checkout instead of failing the request that drew it. While the server is down the
        # ping fails, the pool's connections are all marked stale, and the one reconnection
        # tried fails fast (below): the caller gets an OperationalError, i.e. a 503.
        pool_pre_ping=True,
        connect_args={
            "options": f"-c statement_timeout={milliseconds}",
            "connect_timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS,
            **POSTGRES_KEEPALIVE,
        },
    )


# The database server's clock, in the float seconds of the time columns, for what several
# hosts compare (leases). clock_timestamp(), not now(): now() is frozen at the start of the
# transaction.
POSTGRES_NOW = sql_func.cast(sql_func.extract("epoch", sql_func.clock_timestamp()), Float)


def dialect_insert(dialect: str) -> Callable[[Table], Any]:
    """The INSERT of this dialect (`engine.dialect.name`), for its ON CONFLICT clauses."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def writer(engine: Engine) -> Engine:
    """The same engine, whose transactions take the write lock at BEGIN (SQLite: this
    process's lock on the file, then SQLite's; a thread must not begin one inside another,
    which raises write_lock.NestedWriteError. On PostgreSQL the option is ignored and the
    engine behaves as itself)."""
    return engine.execution_options(**{WRITE_OPTION: True})


def migration_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def newest_revision() -> str | None:
    """The revision a migrated database is at."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(migration_config()).get_current_head()


# alembic's record of the revision a database is at.
_ALEMBIC_VERSION = table("alembic_version", column("version_num"))


def schema_revision(engine: Engine) -> str | None:
    """The revision the database is at now. A plain SELECT: alembic's MigrationContext would
    log two info lines at every call (readiness probes call it every few seconds)."""
    with engine.connect() as connection:
        revision = connection.execute(select(_ALEMBIC_VERSION.c.version_num)).scalar()
    return None if revision is None else str(revision)


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
