"""The job store's state machine on SQLite."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from retouch.jobs import sql_store
from retouch.jobs.models import DeliveryAttempt, Idempotency, IdempotencyConflict, Job, QueueFull
from retouch.jobs.schema import metadata
from retouch.jobs.sql_store import SqlJobStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlJobStore]:
    opened = SqlJobStore.open_sqlite(tmp_path / "jobs.db", max_attempts=3)
    yield opened
    opened.close()


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


def test_queue_cap(store: SqlJobStore) -> None:
    store.submit(key_id="k", endpoint="e", input={}, max_queued=1)
    with pytest.raises(QueueFull):
        store.submit(key_id="k", endpoint="e", input={}, max_queued=1)


def test_concurrent_claims_never_share_a_job(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    stores = [SqlJobStore.open_sqlite(path) for _ in range(4)]
    for _ in range(40):
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
    assert len(claimed) == 40 == len(set(claimed))
    for store in stores:
        store.close()


def test_wait_for_change_wakes_on_another_connections_commit(tmp_path: Path) -> None:
    watcher = SqlJobStore.open_sqlite(tmp_path / "jobs.db")
    writer = SqlJobStore.open_sqlite(tmp_path / "jobs.db")
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


def test_every_way_a_job_ends_queues_its_webhook_once(tmp_path: Path) -> None:
    store = SqlJobStore.open_sqlite(tmp_path / "jobs.db", max_attempts=1)
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


def test_migrations_build_exactly_the_declared_schema(tmp_path: Path) -> None:
    store = SqlJobStore.open_sqlite(tmp_path / "jobs.db")
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
