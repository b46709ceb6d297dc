"""A status poll's read on the driver (retouch.jobs.lean_reads) answers exactly what the same
statement answers through SQLAlchemy, on each backend; on SQLite its connections are set up as
the engine's and cannot write."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import exc, func, select

from retouch.jobs import sql_store
from retouch.jobs.database import migrate, open_sqlite, sqlite_reader
from retouch.jobs.lean_reads import LeanQuery, SqliteQuery, lean_query
from retouch.jobs.models import Job
from retouch.jobs.open_store import open_store
from retouch.jobs.outage import is_unavailable
from retouch.jobs.sql_store import SqlJobStore

KEY = "k"


@pytest.fixture
def store(database_url: str) -> Iterator[SqlJobStore]:
    opened = open_store(database_url, max_attempts=3, webhook_retry_seconds=86400.0)
    yield opened
    opened.close()


def through_sqlalchemy(store: SqlJobStore, job_id: str, key_id: str) -> Job | None:
    with store.engine.connect() as conn:
        row = conn.execute(sql_store._GET_JOB, {"job_id": job_id, "key_id": key_id}).one_or_none()
    return Job.from_row(row) if row else None


def job_query(store: SqlJobStore) -> LeanQuery:
    query = lean_query(store.engine, store.engine, sql_store._GET_JOB, "job_id", "key_id")
    assert query is not None
    return query


def jobs_in_every_state(store: SqlJobStore) -> list[str]:
    """Queued (three, so positions differ), running with progress, succeeded, failed and
    cancelled jobs; their ids."""
    ids = [
        store.submit(key_id=KEY, endpoint="e", input={"n": n}, max_queued=100).id for n in range(7)
    ]
    running, succeeded, failed = (store.claim(worker_id="w", lease_seconds=60) for _ in range(3))
    assert running is not None and succeeded is not None and failed is not None
    store.report_progress(running, step=2, total=5)
    store.complete(succeeded, result={"outputs": [], "warnings": ["w"]})
    store.fail(failed, code="x_failed", message="it failed")
    assert store.cancel(ids[-1], key_id=KEY) is not None
    return ids


def test_get_answers_what_sqlalchemy_answers(store: SqlJobStore) -> None:
    ids = jobs_in_every_state(store)
    query = job_query(store)
    for job_id in [*ids, "no-such-job"]:
        for key_id in (KEY, "another key"):
            expected = through_sqlalchemy(store, job_id, key_id)
            assert store.get(job_id, key_id=key_id) == expected
            rows = query.rows(job_id, key_id)
            assert [Job.from_row(query.row(row)) for row in rows] == (
                [expected] if expected else []
            )
    states = {job.state for job in (store.get(i, key_id=KEY) for i in ids) if job}
    assert len(states) == 5
    query.close()


def test_concurrent_readers_each_read_their_own_answer(store: SqlJobStore) -> None:
    ids = jobs_in_every_state(store)
    expected = {job_id: through_sqlalchemy(store, job_id, KEY) for job_id in ids}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: store.get(ids[n % len(ids)], key_id=KEY), range(400)))
    assert answers == [expected[ids[n % len(ids)]] for n in range(400)]


def test_sqlite_readers_have_the_engine_settings_and_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    engine = open_sqlite(path)
    migrate(engine)
    pragmas = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
    with engine.connect() as conn:
        expected = [conn.exec_driver_sql(f"PRAGMA {name}").scalar_one() for name in pragmas]
    reader = sqlite_reader(path)
    assert [reader.execute(f"PRAGMA {name}").fetchone()[0] for name in pragmas] == expected
    assert reader.isolation_level is None  # autocommit: each read its own snapshot
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.execute("DELETE FROM jobs")
    reader.close()
    engine.dispose()


def test_sqlite_read_errors_are_sqlalchemy_s(tmp_path: Path) -> None:
    """As a read through SQLAlchemy raises them: the API tells an outage from a bug by them."""
    engine = open_sqlite(tmp_path / "no-tables.db")
    query = lean_query(engine, engine, sql_store._GET_JOB, "job_id", "key_id")
    assert isinstance(query, SqliteQuery)
    with pytest.raises(exc.OperationalError, match="no such table") as raised:
        query.rows("a", KEY)
    assert isinstance(raised.value.orig, sqlite3.OperationalError)
    query.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        query.rows("a", KEY)
    engine.dispose()


def test_a_postgres_connection_lost_mid_read_is_dropped_and_the_next_read_works(
    postgres_url: str,
) -> None:
    """As SQLAlchemy does: the error says the connection was invalidated (the API answers 503),
    and the pool does not hand that connection out again."""
    store = open_store(postgres_url, max_attempts=3, webhook_retry_seconds=86400.0)
    try:
        job_id = store.submit(key_id=KEY, endpoint="e", input={}, max_queued=100).id
        suicide = select(func.pg_terminate_backend(func.pg_backend_pid()).label("ended"))
        query = lean_query(store.engine, store.engine, suicide)
        assert query is not None
        with pytest.raises(exc.OperationalError) as raised:
            query.rows()
        assert raised.value.connection_invalidated and is_unavailable(raised.value)
        assert store.get(job_id, key_id=KEY) == through_sqlalchemy(store, job_id, KEY)
    finally:
        store.close()
