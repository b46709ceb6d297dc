"""What only the PostgreSQL backend does: leases on the database's clock, a statement timeout,
and a LISTEN connection that survives being dropped."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from retouch.jobs import sql_store
from retouch.jobs.changes import LISTENER_NAME
from retouch.jobs.open_store import open_store
from retouch.jobs.sql_store import SqlJobStore

from ..databases import psycopg_url
from .heard import Heard


class SkewedClock:
    """Stands in for the `time` module in sql_store: this host's clock is off by `offset`."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def time(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def store(postgres_url: str) -> Iterator[SqlJobStore]:
    opened = open_store(postgres_url, max_attempts=3, webhook_retry_seconds=86400.0)
    yield opened
    opened.close()


def submit(store: SqlJobStore) -> str:
    return store.submit(key_id="k", endpoint="e", input={}, max_queued=100).id


def test_leases_run_on_the_database_clock(
    store: SqlJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    submit(store)
    claim = store.claim(worker_id="w", lease_seconds=30)
    assert claim is not None
    # An hour ahead, a host's own clock would call the lease long expired.
    monkeypatch.setattr(sql_store, "time", SkewedClock(3600))
    assert store.reap_expired().count == 0 and store.is_held(claim)
    # An hour behind, it would renew the lease into the past.
    monkeypatch.setattr(sql_store, "time", SkewedClock(-3600))
    assert store.renew(claim, lease_seconds=30)
    monkeypatch.setattr(sql_store, "time", time)
    assert store.reap_expired().count == 0 and store.is_held(claim)
    # And a short lease still runs out on time, whatever the reaper's host believes.
    assert store.renew(claim, lease_seconds=0.05)
    time.sleep(0.1)
    monkeypatch.setattr(sql_store, "time", SkewedClock(-3600))
    assert store.reap_expired().requeued == (claim.job.id,) and not store.is_held(claim)


def test_a_statement_timeout_fails_one_call_not_the_store(postgres_url: str) -> None:
    store = open_store(
        postgres_url, max_attempts=3, webhook_retry_seconds=86400.0, statement_timeout_seconds=0.2
    )
    job_id = submit(store)
    with psycopg.connect(psycopg_url(postgres_url)) as blocker:
        # A stuck transaction holds the job's row: cancelling it waits for the row lock.
        blocker.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (job_id,))
        started = time.monotonic()
        with pytest.raises(OperationalError, match="statement timeout"):
            store.cancel(job_id, key_id="k")
        assert time.monotonic() - started < 10
        # Claims skip the locked row instead of waiting on it.
        assert store.claim(worker_id="w", lease_seconds=30) is None
        blocker.rollback()
    cancelled = store.cancel(job_id, key_id="k")
    assert cancelled is not None and cancelled[1]
    store.close()


def listener_pids(url: str) -> set[int]:
    with psycopg.connect(psycopg_url(url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s",
            (LISTENER_NAME,),
        ).fetchall()
    return {int(row[0]) for row in rows}


def wait_for_listener(url: str, *, other_than: set[int]) -> set[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = listener_pids(url) - other_than
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("no listener connected")


def test_a_dropped_listener_reconnects_and_wakes_waiters(postgres_url: str) -> None:
    watcher = open_store(postgres_url, max_attempts=3, webhook_retry_seconds=86400.0)
    writer = open_store(postgres_url, max_attempts=3, webhook_retry_seconds=86400.0)
    token = watcher.change_token()
    heard = Heard(watcher)
    first = wait_for_listener(postgres_url, other_than=set())
    with psycopg.connect(psycopg_url(postgres_url), autocommit=True) as admin:
        for pid in first:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    # Notifications sent while it was away are lost: the loss itself wakes waiters, all of
    # them.
    assert watcher.wait_for_change(30, since=token)
    heard.until(lambda changes: changes.everything)
    wait_for_listener(postgres_url, other_than=first)
    token = watcher.change_token()
    submit(writer)
    assert watcher.wait_for_change(30, since=token)
    while not heard.by_id(submit(writer)):  # until it listens again
        pass
    heard.stop()
    watcher.close()
    writer.close()
