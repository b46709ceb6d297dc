"""The job store's state machine on SQLite."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from retouch.jobs.models import QueueFull
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
