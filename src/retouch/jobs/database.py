"""Opening the database: the SQLAlchemy engine with SQLite's durability settings, and the
migrations that create or upgrade the schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
WRITE_OPTION = "retouch_write"


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
        cursor.execute("PRAGMA journal_mode=WAL")
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


def writer(engine: Engine) -> Engine:
    """The same engine, whose transactions take the write lock at BEGIN."""
    return engine.execution_options(**{WRITE_OPTION: True})


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to the newest revision. Safe when several processes start
    at once: the write lock serialises them and the later ones find nothing to do."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with writer(engine).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
