"""The job store's state machine, on each backend (SQLite, PostgreSQL): every test taking
`store` or `database_url` runs on both (see tests/unit/conftest.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import update

from retouch.jobs import sql_store
from retouch.jobs.database import migrate, newest_revision, open_engine, writer
from retouch.jobs.models import (
    Claim,
    DeliveryAttempt,
    EndpointLoad,
    FailureGroup,
    Idempotency,
    IdempotencyConflict,
    Job,
    QueueFull,
)
from retouch.jobs.schema import jobs as jobs_table
from retouch.jobs.schema import metadata
from retouch.jobs.sql_store import SqlJobStore

from ..databases import open_at
from .heard import Heard

T = TypeVar("T")


def submit(store: SqlJobStore, key: str = "k") -> str:
    return store.submit(key_id=key, endpoint="e", input={"n": 1}, max_queued=100).id


def test_fifo_claims_and_positions(store: SqlJobStore) -> None:
    ids = [submit(store) for _ in range(3)]
    jobs = [store.get(i, key_id="k") for i in ids]
    assert [j.queue_position for j in jobs if j] == [0, 1, 2]
    claim = store.claim(worker_id="w", lease_seconds=30)
    assert claim is not None and claim.job.id == ids[0] and claim.job.state == "running"
    later = store.get(ids[2], key_id="k")
    assert later is not None and later.queue_position == 1


def test_only_the_lease_holder_finishes(store: SqlJobStore) -> None:
    submit(store)
    first = store.claim(worker_id="a", lease_seconds=0.01)
    assert first is not None
    time.sleep(0.02)
    second = store.claim(worker_id="b", lease_seconds=30)
    assert second is not None and second.job.id == first.job.id and second.job.attempts == 2
    assert not store.complete(first, result={"outputs": []})
    assert not store.renew(first, lease_seconds=30)
    assert store.complete(second, result={"outputs": []})
    assert not store.fail(second, code="x", message="y")
    done = store.get(first.job.id, key_id="k")
    assert done is not None and done.state == "succeeded" and done.result == {"outputs": []}
    assert store.delivery(first.job.id) is None  # it asked for no webhook


def test_cancel_only_while_queued(store: SqlJobStore) -> None:
    job_id = submit(store)
    other = submit(store)
    assert store.cancel(job_id, key_id="someone-else") is None
    found = store.cancel(job_id, key_id="k")
    assert found is not None and found[1] and found[0].state == "cancelled"
    again = store.cancel(job_id, key_id="k")
    assert again is not None and not again[1]
    claim = store.claim(worker_id="w", lease_seconds=30)
    assert claim is not None and claim.job.id == other
    running = store.cancel(other, key_id="k")
    assert running is not None and not running[1] and running[0].state == "running"


def test_release_requeues_without_counting_an_attempt(store: SqlJobStore) -> None:
    submit(store)
    claim = store.claim(worker_id="w", lease_seconds=30)
    assert claim is not None and store.release(claim)
    again = store.claim(worker_id="w", lease_seconds=30)
    assert again is not None and again.job.attempts == 1


def test_a_busy_claimer_reaps_once_an_interval_and_whenever_nothing_is_queued(
    store: SqlJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql_store, "REAP_INTERVAL_SECONDS", 3600.0)
    first, second = submit(store), submit(store)
    lost = store.claim(worker_id="a", lease_seconds=-1)  # the store's first claim reaps
    assert lost is not None and lost.job.id == first
    # Not due again: the next queued job is taken, the lost one left as it is.
    other = store.claim(worker_id="b", lease_seconds=30)
    assert other is not None and other.job.id == second
    left = store.get(first, key_id="k")
    assert left is not None and left.state == "running"
    # Nothing queued: the claim reaps before it answers, and takes the lost job.
    again = store.claim(worker_id="b", lease_seconds=30)
    assert again is not None and again.job.id == first and again.job.attempts == 2


def test_a_claim_due_to_reap_takes_the_lost_job_first(
    store: SqlJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql_store, "REAP_INTERVAL_SECONDS", 0.0)
    first, _ = submit(store), submit(store)
    assert store.claim(worker_id="a", lease_seconds=-1) is not None
    again = store.claim(worker_id="b", lease_seconds=30)
    assert again is not None and again.job.id == first and again.job.attempts == 2
    assert [line.message for line in store.logs(first)] == [
        "started by a (attempt 1)",
        "its worker stopped responding; back in the queue",
        "started by b (attempt 2)",
    ]


def test_a_claim_hands_on_the_jobs_its_reap_gave_up(database_url: str) -> None:
    store = open_at(database_url, max_attempts=1)
    job_id = hooked(store)
    assert store.claim(worker_id="a", lease_seconds=-1) is not None
    given_up: list[tuple[str, ...]] = []
    assert store.claim(worker_id="b", lease_seconds=30, given_up=given_up.append) is None
    assert given_up == [(job_id,)]
    lost = store.get(job_id, key_id="k")
    assert lost is not None and lost.state == "failed" and lost.error_code == "worker_lost"
    assert store.delivery(job_id) is not None
    store.close()


def test_claims_on_a_sqlite_without_returning(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    migrate(engine)
    engine.dialect.update_returning = False  # as SQLAlchemy sets it before SQLite 3.35
    store = SqlJobStore(engine)
    job_id = hooked(store)
    claim = store.claim(worker_id="w", lease_seconds=30)
    assert claim is not None and claim.job.id == job_id and claim.job.state == "running"
    assert claim.job.input == {} and claim.job.attempts == 1
    assert [line.message for line in store.logs(job_id)] == ["started by w (attempt 1)"]
    assert store.complete(claim, result={"outputs": []})
    assert store.delivery(job_id) is not None
    store.close()


def test_queue_cap(store: SqlJobStore) -> None:
    store.submit(key_id="k", endpoint="e", input={}, max_queued=1)
    with pytest.raises(QueueFull):
        store.submit(key_id="k", endpoint="e", input={}, max_queued=1)


def test_concurrent_claims_never_share_a_job(database_url: str) -> None:
    stores = [open_at(database_url) for _ in range(8)]
    for _ in range(100):
        submit(stores[0])
    claimed: list[str] = []
    lock = threading.Lock()

    def drain(store: SqlJobStore) -> None:
        while (claim := store.claim(worker_id="w", lease_seconds=30)) is not None:
            with lock:
                claimed.append(claim.job.id)

    threads = [threading.Thread(target=drain, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == 100 == len(set(claimed))
    for store in stores:
        store.close()


def test_wait_for_change_wakes_on_another_stores_commit(database_url: str) -> None:
    watcher = open_at(database_url)
    writer = open_at(database_url)
    assert not watcher.wait_for_change(0.02)
    timer = threading.Timer(0.05, submit, args=(writer,))
    timer.start()
    assert watcher.wait_for_change(5)
    timer.join()
    watcher.close()
    writer.close()


def hooked(store: SqlJobStore, key: str = "k") -> str:
    return store.submit(
        key_id=key, endpoint="e", input={}, max_queued=100, webhook_url="https://h.example/x"
    ).id


def test_every_way_a_job_ends_queues_its_webhook_once(database_url: str) -> None:
    store = open_at(database_url, max_attempts=1)
    cancelled, succeeded, failed, lost = (hooked(store) for _ in range(4))
    without = submit(store)
    store.cancel(cancelled, key_id="k")
    store.cancel(cancelled, key_id="k")  # a repeated cancel queues nothing more
    for outcome in ("complete", "fail", "lose"):
        claim = store.claim(worker_id="w", lease_seconds=30 if outcome != "lose" else 0.01)
        assert claim is not None
        if outcome == "complete":
            assert store.complete(claim, result={"outputs": []})
        elif outcome == "fail":
            assert store.fail(claim, code="x", message="y")
    time.sleep(0.02)
    store.reap_expired()
    assert store.get(lost, key_id="k") is not None
    for job_id in (cancelled, succeeded, failed, lost):
        record = store.delivery(job_id)
        assert record is not None and record.state == "pending" and record.attempts == []
    assert store.delivery(without) is None
    due = store.claim_deliveries(limit=10, lease_seconds=30)
    assert sorted(d.job_id for d in due) == sorted([cancelled, succeeded, failed, lost])
    # Leased: a second dispatcher gets none of them.
    assert store.claim_deliveries(limit=10, lease_seconds=30) == []
    store.close()


def test_delivery_attempts_retry_then_deliver_or_give_up(store: SqlJobStore) -> None:
    first, second = hooked(store), hooked(store)
    for job_id in (first, second):
        store.cancel(job_id, key_id="k")
    one, two = sorted(store.claim_deliveries(limit=10, lease_seconds=30), key=lambda d: d.job_id)
    now = time.time()
    store.record_delivery_attempt(
        one, DeliveryAttempt(now, 500, "HTTP 500", 3.0), delivered=False, retry_at=now - 1
    )
    store.record_delivery_attempt(
        two, DeliveryAttempt(now, 410, "HTTP 410", 2.0), delivered=False, retry_at=None
    )
    assert store.next_delivery_at() == pytest.approx(now - 1)
    (again,) = store.claim_deliveries(limit=10, lease_seconds=30)
    assert again.job_id == one.job_id and again.attempts == 1
    store.record_delivery_attempt(
        again, DeliveryAttempt(now, 204, None, 1.0), delivered=True, retry_at=None
    )
    done, stopped = store.delivery(one.job_id), store.delivery(two.job_id)
    assert done is not None and done.state == "delivered" and done.next_attempt_at is None
    assert [a.status_code for a in done.attempts] == [500, 204]
    assert stopped is not None and stopped.state == "failed"
    assert store.next_delivery_at() is None


def test_idempotency_replays_conflicts_and_expires(
    store: SqlJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def send(key: str, digest: str, owner: str = "k") -> Job:
        return store.submit(
            key_id=owner,
            endpoint="e",
            input={},
            max_queued=100,
            idempotency=Idempotency(key, digest),
        )

    original = send("a", "h1")
    replay = send("a", "h1")
    assert replay.replayed and not original.replayed and replay.id == original.id
    with pytest.raises(IdempotencyConflict) as conflict:
        send("a", "h2")
    assert conflict.value.job_id == original.id
    assert send("a", "h1", owner="other").id != original.id
    monkeypatch.setattr(sql_store, "IDEMPOTENCY_SECONDS", -1.0)
    later = send("a", "h2")
    assert later.id != original.id and not later.replayed


def test_request_pages_are_newest_first(store: SqlJobStore) -> None:
    ids = [submit(store) for _ in range(5)]
    submit(store, key="other")
    first = store.list_jobs(key_id="k", limit=3)
    assert [job.id for job in first.jobs] == ids[:1:-1] and first.next_cursor is not None
    rest = store.list_jobs(key_id="k", limit=3, before=first.next_cursor)
    assert [job.id for job in rest.jobs] == ids[1::-1] and rest.next_cursor is None
    assert all(job.input is None for job in first.jobs + rest.jobs)


def submit_to(store: SqlJobStore, endpoint: str) -> str:
    return store.submit(key_id="k", endpoint=endpoint, input={}, max_queued=100).id


def created_at(store: SqlJobStore, job_id: str) -> float:
    job = store.get(job_id, key_id="k")
    assert job is not None
    return job.created_at


def test_the_queue_overview_counts_each_endpoints_unfinished_jobs(store: SqlJobStore) -> None:
    a_running, a_oldest, _ = (submit_to(store, "a") for _ in range(3))
    b_cancelled, b_oldest = submit_to(store, "b"), submit_to(store, "b")
    submit_to(store, "c")
    submit_to(store, "d")
    claims = [store.claim(worker_id="w", lease_seconds=30, endpoints=[e]) for e in "acd"]
    assert claims[0] is not None and claims[0].job.id == a_running
    assert claims[2] is not None and store.complete(claims[2], result={"outputs": []})
    store.cancel(b_cancelled, key_id="k")
    snapshot = store.queue_overview(failures_within=3600)
    # d has nothing unfinished: left out (the API adds the served endpoints).
    assert snapshot.endpoints == (
        EndpointLoad("a", 2, 1, a_oldest, created_at(store, a_oldest)),
        EndpointLoad("b", 1, 0, b_oldest, created_at(store, b_oldest)),
        EndpointLoad("c", 0, 1, None, None),
    )
    assert snapshot.failures == ()
    assert abs(snapshot.at - time.time()) < 60


def failed_at(store: SqlJobStore, code: str, message: str, finished_at: float) -> str:
    """A job failed with `code`, its finished_at set to `finished_at`."""
    job_id = submit_to(store, "e")
    claim = store.claim(worker_id="w", lease_seconds=30)
    assert claim is not None and claim.job.id == job_id
    assert store.fail(claim, code=code, message=message)
    with writer(store.engine).begin() as conn:
        conn.execute(
            update(jobs_table).where(jobs_table.c.id == job_id).values(finished_at=finished_at)
        )
    return job_id


def test_the_queue_overview_groups_the_windows_failures_by_code(store: SqlJobStore) -> None:
    now = time.time()
    failed_at(store, "x", "first x", now - 300)
    newest_x = failed_at(store, "x", "newest x", now - 10)
    failed_at(store, "x", "later submit, earlier end", now - 100)
    newest_y = failed_at(store, "y", "the y", now - 20)
    old_x = failed_at(store, "x", "old x", now - 7200)
    old_z = failed_at(store, "z", "old z", now - 7300)
    store.cancel(submit_to(store, "e"), key_id="k")  # ended, but not failed
    hour = store.queue_overview(failures_within=3600).failures
    assert hour == (
        FailureGroup("x", 3, now - 10, newest_x, "newest x"),
        FailureGroup("y", 1, now - 20, newest_y, "the y"),
    )
    day = store.queue_overview(failures_within=86400).failures
    assert [(group.code, group.count, group.last_id) for group in day] == [
        ("x", 4, newest_x),
        ("y", 1, newest_y),
        ("z", 1, old_z),
    ]
    assert old_x not in {group.last_id for group in day}
    assert store.queue_overview(failures_within=60).failures == (
        FailureGroup("x", 1, now - 10, newest_x, "newest x"),
        FailureGroup("y", 1, now - 20, newest_y, "the y"),
    )


def test_migrations_build_exactly_the_declared_schema(unmigrated_database_url: str) -> None:
    store = open_at(unmigrated_database_url)
    with store.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    store.close()
    assert differences == []


def test_an_attempt_that_outlived_its_lease_decides_nothing(store: SqlJobStore) -> None:
    store.cancel(hooked(store), key_id="k")
    (stale,) = store.claim_deliveries(limit=1, lease_seconds=0.01)
    time.sleep(0.02)
    (current,) = store.claim_deliveries(limit=1, lease_seconds=30)
    now = time.time()
    store.record_delivery_attempt(
        current, DeliveryAttempt(now, 204, None, 1.0), delivered=True, retry_at=None
    )
    # The first sender's late failure is listed, but cannot reopen a delivered webhook.
    store.record_delivery_attempt(
        stale, DeliveryAttempt(now, 500, "HTTP 500", 1.0), delivered=False, retry_at=now
    )
    record = store.delivery(current.job_id)
    assert record is not None and record.state == "delivered"
    assert [a.status_code for a in record.attempts] == [204, 500]


def run_at_once(count: int, action: Callable[[int], T]) -> list[T | BaseException]:
    """`action(i)` for i in range(count), each in its own thread, released together; each
    outcome is its result or the exception it raised."""
    start = threading.Barrier(count)

    def attempt(index: int) -> T | BaseException:
        start.wait()
        try:
            return action(index)
        except Exception as error:
            return error

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(attempt, range(count)))


def test_concurrent_idempotent_submits_make_one_job(database_url: str) -> None:
    stores = [open_at(database_url) for _ in range(4)]

    def send(index: int) -> Job:
        # Half the retries carry another body: they conflict with whichever won.
        digest = "h1" if index % 2 else "h2"
        return stores[index % 4].submit(
            key_id="k", endpoint="e", input={}, max_queued=100, idempotency=Idempotency("i", digest)
        )

    outcomes = run_at_once(16, send)
    made = stores[0].list_jobs(key_id="k", limit=100).jobs
    assert len(made) == 1
    answered = [o for o in outcomes if isinstance(o, Job)]
    conflicts = [o for o in outcomes if isinstance(o, IdempotencyConflict)]
    assert len(answered) == len(conflicts) == 8
    assert {job.id for job in answered} == {made[0].id}
    assert [job.replayed for job in answered].count(False) == 1
    assert {conflict.job_id for conflict in conflicts} == {made[0].id}
    for opened in stores:
        opened.close()


def test_migrations_from_many_processes_at_once(unmigrated_database_url: str) -> None:
    def migrate_one(_: int) -> None:
        engine = open_engine(unmigrated_database_url)
        try:
            migrate(engine)
        finally:
            engine.dispose()

    assert run_at_once(6, migrate_one) == [None] * 6
    store = open_at(unmigrated_database_url)
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn)
        assert context.get_current_heads() == (newest_revision(),)
        assert compare_metadata(context, metadata) == []
    store.close()


def test_every_write_a_waiter_cares_about_wakes_it(database_url: str) -> None:
    """On another store: each write wakes the waiters of its own job, and only those (the
    jobs its watch hears), and an idle worker (wait_for_change)."""
    watcher = open_at(database_url)
    store = open_at(database_url, max_attempts=1)
    first, second, third = (hooked(store) for _ in range(3))
    heard = Heard(watcher)

    def woken_by(write: Callable[[], object]) -> frozenset[str]:
        token = watcher.change_token()
        write()
        assert watcher.wait_for_change(10, since=token)
        return heard.until(lambda changes: bool(changes.job_ids))[-1].job_ids

    def claim(lease_seconds: float = 30) -> Claim:
        claims: list[Claim | None] = []
        woken = woken_by(
            lambda: claims.append(store.claim(worker_id="w", lease_seconds=lease_seconds))
        )
        assert claims[0] is not None and woken == {claims[0].job.id}
        return claims[0]

    submitted: list[str] = []
    assert woken_by(lambda: submitted.append(submit(store))) == set(submitted)
    released = claim()
    assert woken_by(lambda: store.report_progress(released, step=1, total=2)) == {first}
    assert woken_by(lambda: store.release(released)) == {first}
    completed, failed = claim(), claim()
    assert (completed.job.id, failed.job.id) == (first, second)
    assert woken_by(lambda: store.complete(completed, result={"outputs": []})) == {first}
    assert woken_by(lambda: store.fail(failed, code="x", message="y")) == {second}
    assert woken_by(lambda: store.cancel(third, key_id="k")) == {third}
    claim(lease_seconds=0.01)
    time.sleep(0.02)
    assert woken_by(store.reap_expired) == set(submitted)
    heard.stop()
    watcher.close()
    store.close()
