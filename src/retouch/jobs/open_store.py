"""Opening the job store named by a database URL (RETOUCH_DATABASE_URL, or the SQLite file in
the data dir): its engine, migrated to the newest schema."""

from __future__ import annotations

from retouch.jobs.database import (
    DEFAULT_POOL,
    POSTGRES_STATEMENT_TIMEOUT_SECONDS,
    PostgresPool,
    migrate,
    open_engine,
)
from retouch.jobs.sql_store import SqlJobStore


def open_store(
    url: str,
    *,
    max_attempts: int,
    webhook_retry_seconds: float,
    default_max_running: int | None = None,
    statement_timeout_seconds: float = POSTGRES_STATEMENT_TIMEOUT_SECONDS,
    pool: PostgresPool = DEFAULT_POOL,
) -> SqlJobStore:
    """The store on `sqlite:///PATH` or `postgresql+psycopg://…`, migrated; DatabaseUrlError
    for any other URL."""
    engine = open_engine(url, statement_timeout_seconds=statement_timeout_seconds, pool=pool)
    try:
        migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return SqlJobStore(
        engine,
        max_attempts=max_attempts,
        webhook_retry_seconds=webhook_retry_seconds,
        default_max_running=default_max_running,
    )
