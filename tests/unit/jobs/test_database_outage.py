"""The job database going away and coming back: the API answers 503001 with Retry-After (never
a 500, never a hang), a worker keeps its job and finishes it exactly once, and the claim loop
carries on. PostgreSQL goes away behind a TCP proxy the test cuts (tests/unit/tcp_proxy.py);
SQLite's outage is another connection holding the write lock: "database is locked"."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import pytest
from sqlalchemy import URL, create_engine, event, make_url
from sqlalchemy import exc as sql_exc

from retouch.jobs.database import POSTGRES_DRIVER
from retouch.jobs.open_store import open_store
from retouch.jobs.outage import Backoff, OutageLog, is_busy, is_unavailable, until_answered
from retouch.jobs.sql_store import SqlJobStore
from retouch.services import Services

from ..databases import ADMIN_URL, PostgresDatabases
from ..inprocess import SQUARE_PNG, InProcessServer, in_process_server
from ..tcp_proxy import TcpProxy, proxy_to, wait_until

T = TypeVar("T")
BODY = {"prompt": "x", "image_urls": ["data:image/png;base64," + SQUARE_PNG]}
# SQLite waits this long for the write lock in these tests instead of the 30 s it waits in
# service, so that a held lock shows up as "database is locked" at once.
SQLITE_BUSY_MS = 200
# A hang guard on each request made while the database is away: far above the few seconds
# that database.open_postgres bounds one to.
REQUEST_GUARD_SECONDS = 60


def within(seconds: float, call: Callable[[], T]) -> T:
    """call()'s answer, or a failed test if it has none after `seconds` (a hang guard)."""
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(call).result(timeout=seconds)
    finally:
        pool.shutdown(wait=False)


# --- telling an outage from a bug ----------------------------------------------------------


def _error_of(engine_url: str | URL, statement: str = "SELECT 1", **connect_args: Any) -> Exception:
    engine = create_engine(engine_url, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(statement)
    except Exception as error:
        return error
    finally:
        engine.dispose()
    raise AssertionError("no error")


def test_outages_are_told_from_bugs(tmp_path: Path) -> None:
    with proxy_to(ADMIN_URL) as proxy:
        proxy.cut()
        dropped = _error_of(make_url(proxy.url_through(ADMIN_URL)).set(drivername=POSTGRES_DRIVER))
    assert isinstance(dropped, sql_exc.OperationalError)
    assert is_unavailable(dropped) and not is_busy(dropped)

    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (a)")
    holder.execute("BEGIN IMMEDIATE")
    try:
        locked = _error_of(f"sqlite:///{path}", "INSERT INTO t VALUES (1)", timeout=0)
    finally:
        holder.close()
    assert is_unavailable(locked) and is_busy(locked)
    assert not is_unavailable(_error_of(f"sqlite:///{path}", "SELECT * FROM missing"))
    assert not is_unavailable(ValueError("not a database error"))
    assert is_unavailable(sql_exc.TimeoutError("QueuePool limit reached"))


def raising(error: Exception) -> Callable[[], int]:
    def call() -> int:
        raise error

    return call


def test_until_answered_retries_an_outage_only() -> None:
    down = sql_exc.OperationalError("SELECT 1", {}, Exception("connection refused"))
    answers: list[Callable[[], int]] = [raising(down), raising(down), lambda: 7]
    pauses: list[float] = []
    outage = OutageLog(logging.getLogger(__name__), "test")
    assert until_answered(lambda: answers.pop(0)(), outage, sleep=pauses.append) == 7
    assert pauses == [0.2, 0.4] and not outage.down
    with pytest.raises(sql_exc.OperationalError):
        until_answered(raising(down), outage, give_up=lambda: True)
    with pytest.raises(ZeroDivisionError):  # a bug is not retried
        until_answered(raising(ZeroDivisionError()), outage, sleep=pauses.append)
    backoff = Backoff()
    assert [backoff.next() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]


# --- the two backends' outages ---------------------------------------------------------------


class Outage(Protocol):
    def begin(self) -> None: ...

    def end(self) -> None: ...


@dataclass
class ProxiedPostgres:
    """A database of its own on the test server, reached through a proxy: cut is down."""

    direct_url: str
    proxy: TcpProxy

    @property
    def url(self) -> str:
        return self.proxy.url_through(self.direct_url)

    def begin(self) -> None:
        self.proxy.cut()

    def end(self) -> None:
        self.proxy.restore()


class HeldSqliteLock:
    """Another connection holding SQLite's write lock: writers get "database is locked" (once
    the busy timeout passes); readers go on, as WAL lets them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._holder: sqlite3.Connection | None = None

    def begin(self) -> None:
        self._holder = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._holder.execute("BEGIN IMMEDIATE")

    def end(self) -> None:
        if self._holder is not None:
            self._holder.close()  # rolls back, releasing the lock
            self._holder = None


@pytest.fixture
def proxied_postgres(postgres: PostgresDatabases) -> Iterator[ProxiedPostgres]:
    direct = postgres.create()
    with proxy_to(direct) as proxy:
        yield ProxiedPostgres(direct, proxy)


def shorten_busy_timeout(store: SqlJobStore) -> None:
    """New connections wait SQLITE_BUSY_MS for the lock; the pooled ones are replaced."""

    @event.listens_for(store.engine, "connect")
    def _busy(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")

    store.engine.dispose()


def shorten_busy_timeouts(services: Services) -> None:
    shorten_busy_timeout(services.store)  # type: ignore[arg-type]


@contextmanager
def server_with_outage(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, **settings: Any
) -> Iterator[tuple[InProcessServer, Outage]]:
    """An in-process server on the backend, and the outage to begin and end on it."""
    outage: Outage
    if backend == "postgresql":
        postgres: ProxiedPostgres = request.getfixturevalue("proxied_postgres")
        settings["database_url"] = postgres.url
        outage = postgres
    # Before any thread uses the store: an engine's listeners must not change while it connects.
    shorten = shorten_busy_timeouts if backend == "sqlite" else None
    with in_process_server(tmp_path / "data", before_worker=shorten, **settings) as server:
        if backend == "sqlite":
            outage = HeldSqliteLock(server.settings.database_path)
        try:
            yield server, outage
        finally:
            outage.end()


def recorded(monkeypatch: pytest.MonkeyPatch, store: object, name: str) -> list[object]:
    """What each call of store.<name> answered or raised, in order."""
    outcomes: list[object] = []
    original = getattr(store, name)

    def recording(*args: Any, **kwargs: Any) -> Any:
        try:
            answer = original(*args, **kwargs)
        except Exception as error:
            outcomes.append(error)
            raise
        outcomes.append(answer)
        return answer

    monkeypatch.setattr(store, name, recording)
    return outcomes


def begin_on_first_call(
    monkeypatch: pytest.MonkeyPatch, store: object, name: str, outage: Outage
) -> list[object]:
    """store.<name> begins the outage on its first call (just before trying): deterministic,
    where a cut "while it runs" would be a race. Returns its outcomes."""
    outcomes = recorded(monkeypatch, store, name)
    recording = getattr(store, name)

    def first_begins(*args: Any, **kwargs: Any) -> Any:
        if not outcomes:
            outage.begin()
        return recording(*args, **kwargs)

    monkeypatch.setattr(store, name, first_begins)
    return outcomes


def failed(outcomes: list[object]) -> int:
    return sum(isinstance(outcome, sql_exc.SQLAlchemyError) for outcome in outcomes)


def start_lines(store: SqlJobStore, job_id: str) -> list[str]:
    return [line.message for line in store.logs(job_id) if line.message.startswith("started by")]


# --- the API ---------------------------------------------------------------------------------


def assert_503(response: httpx.Response, state: str, what: str = "") -> None:
    assert response.status_code == 503, (what, response.text)
    body = response.json()
    assert body["error_code"] == 503001, what
    assert body["error_message"] == f"the job database is {state}: retry in a few seconds", what
    assert response.headers["Retry-After"] == "5", what


def test_the_api_answers_503_while_postgres_is_down(
    proxied_postgres: ProxiedPostgres, tmp_path: Path
) -> None:
    with in_process_server(
        tmp_path / "data", worker=False, database_url=proxied_postgres.url
    ) as server:
        api = server.api()
        job_id = api.submit_ok(BODY)
        unused = api.with_key(server.new_key("never used"))  # its check reads the database
        requests: dict[str, Callable[[], httpx.Response]] = {
            "status": lambda: api.status(job_id),
            "result with logs": lambda: api.http.get(
                f"{api.base}/v1/requests/{job_id}/result?logs=true", headers=api.headers
            ),
            "list": lambda: api.http.get(f"{api.base}/v1/requests", headers=api.headers),
            "submit": lambda: api.submit(BODY),
            "submit, waiting": lambda: api.http.post(
                f"{api.base}/v1/models/google/nano-banana-2/edit",
                json=BODY,
                headers={**api.headers, "Prefer": "wait=5"},
            ),
            "stream": lambda: api.http.get(
                f"{api.base}/v1/requests/{job_id}/stream", headers=api.headers
            ),
            "cancel": lambda: api.cancel(job_id),
            "a key not seen yet": lambda: unused.http.get(
                f"{api.base}/v1/requests", headers=unused.headers
            ),
        }
        proxied_postgres.begin()
        try:
            for name, call in requests.items():
                assert_503(within(REQUEST_GUARD_SECONDS, call), "unreachable", name)
        finally:
            proxied_postgres.end()
        assert api.status(job_id).status_code == 200
        assert api.http.get(f"{api.base}/v1/requests", headers=api.headers).status_code == 200
        assert unused.http.get(f"{api.base}/v1/requests", headers=unused.headers).status_code == 200
        assert api.submit(BODY).status_code == 200
        assert api.cancel(job_id).json()["outcome"] == "cancelled"


def test_the_api_answers_503_while_sqlite_is_locked(tmp_path: Path) -> None:
    """Reads go on (WAL); a write that waited out the busy timeout is a 503, not a 500."""
    with in_process_server(
        tmp_path / "data", worker=False, before_worker=shorten_busy_timeouts
    ) as server:
        api = server.api()
        job_id = api.submit_ok(BODY)
        lock = HeldSqliteLock(server.settings.database_path)
        lock.begin()
        try:
            assert_503(within(REQUEST_GUARD_SECONDS, lambda: api.submit(BODY)), "busy")
            assert_503(within(REQUEST_GUARD_SECONDS, lambda: api.cancel(job_id)), "busy")
            assert api.status(job_id).status_code == 200
        finally:
            lock.end()
        assert api.submit(BODY).status_code == 200
        assert api.cancel(job_id).json()["outcome"] == "cancelled"


# --- the worker ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_worker_keeps_its_job_through_outages_and_finishes_it_once(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="retouch.worker")
    # A lease renewed every second; the outages below are shorter than it, and no other
    # worker could reap it anyway.
    with server_with_outage(backend, request, tmp_path, lease_seconds=3.0) as (server, outage):
        store = server.services.store
        assert isinstance(store, SqlJobStore)
        renewals = recorded(monkeypatch, store, "renew")
        api = server.api()
        prompt, gate = server.engine.hold()
        job_id = api.submit_ok({**BODY, "prompt": prompt})
        api.wait_for_status(job_id, "in_progress")

        # While the engine runs: renewals fail, the job goes on, and renewing resumes.
        outage.begin()
        wait_until(lambda: failed(renewals) >= 1, "a renewal failed")
        assert server.worker.outage.down and server.worker.current_job == job_id
        outage.end()
        wait_until(lambda: renewals[-1] is True, "the lease renewed again")

        # As it finishes: completing is retried until the database answers.
        completions = begin_on_first_call(monkeypatch, store, "complete", outage)
        gate.set()
        wait_until(lambda: failed(completions) >= 2, "completing was retried")
        outage.end()
        result = api.wait(job_id)

    assert result["status"] == "succeeded", result
    assert completions[-1] is True and failed(completions) == len(completions) - 1
    assert len(start_lines(store, job_id)) == 1
    assert not any("stopped responding" in line.message for line in store.logs(job_id))
    assert "losing the claim" not in caplog.text and "no longer ours" not in caplog.text


def test_a_lease_reaped_during_the_cut_discards_that_attempt(
    proxied_postgres: ProxiedPostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with in_process_server(
        tmp_path / "data", database_url=proxied_postgres.url, lease_seconds=1.0
    ) as server:
        store = server.services.store
        assert isinstance(store, SqlJobStore)
        api = server.api()
        prompt, gate = server.engine.hold()
        job_id = api.submit_ok({**BODY, "prompt": prompt})
        api.wait_for_status(job_id, "in_progress")
        completions = begin_on_first_call(monkeypatch, store, "complete", proxied_postgres)
        gate.set()  # the second attempt runs straight through
        wait_until(lambda: failed(completions) >= 1, "completing failed")
        first_files = sorted((server.settings.outputs_dir / job_id).iterdir())
        assert first_files
        # Another worker, which still reaches the database, reaps the lease that ran out.
        other = open_store(proxied_postgres.direct_url, max_attempts=3, webhook_retry_seconds=60)
        try:
            wait_until(lambda: job_id in other.reap_expired().requeued, "the lease was reaped")
        finally:
            other.close()
        proxied_postgres.end()
        result = api.wait(job_id)

    assert result["status"] == "succeeded", result
    assert False in completions  # the first attempt's completion was refused
    assert len(start_lines(store, job_id)) == 2
    kept = sorted((server.settings.outputs_dir / job_id).iterdir())
    assert kept and not set(kept) & set(first_files)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_claim_loop_rides_out_an_outage(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="retouch.worker")
    with server_with_outage(backend, request, tmp_path) as (server, outage):
        outage.begin()
        wait_until(lambda: server.worker.outage.down, "the worker noticed")
        outage.end()
        api = server.api()
        result = api.wait(api.submit_ok(BODY))
    assert result["status"] == "succeeded", result
    worker_lines = [r for r in caplog.records if r.name == "retouch.worker.runner"]
    # One warning for the outage, one line once it was over, and no traceback per try.
    assert len([r for r in worker_lines if "does not answer" in r.getMessage()]) == 1
    assert len([r for r in worker_lines if "answers again" in r.getMessage()]) == 1
    assert not [r for r in worker_lines if r.exc_info]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_stopping_worker_stops_trying_to_release_once_its_lease_ran_out(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with server_with_outage(backend, request, tmp_path, lease_seconds=1.0) as (server, outage):
        api = server.api()
        prompt, _ = server.engine.hold()
        job_id = api.submit_ok({**BODY, "prompt": prompt})
        api.wait_for_status(job_id, "in_progress")
        outage.begin()
        server.worker.stop()
        wait_until(lambda: server.worker.current_job is None, "the worker let the job go")
        outage.end()
        # Still running on the record, but its lease has run out: the next reaper requeues it.
        store = server.services.store
        wait_until(lambda: job_id in store.reap_expired().requeued, "the job was requeued")
