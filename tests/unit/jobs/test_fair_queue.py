"""Fair scheduling across keys and the per-key limits the store enforces: one key's backlog
never starves another, queue positions stay exact in the fair order, a key's queued jobs
are capped, and a key running as many jobs as it may has its next ones skipped, on both
backends."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import update

from retouch.contract.states import JobState
from retouch.jobs.database import writer
from retouch.jobs.models import KeyQueueFull, QueueFull
from retouch.jobs.schema import api_keys, jobs
from retouch.jobs.sql_store import SqlJobStore

from ..databases import open_at
from .test_queue_position import assert_exact

A, B, C = "key-a", "key-b", "key-c"


def submit(store: SqlJobStore, key: str, *, key_cap: int | None = None) -> str:
    job = store.submit(key_id=key, endpoint="e", input={}, max_queued=10**6, key_max_queued=key_cap)
    return job.id


def claim_key(store: SqlJobStore) -> str:
    claim = store.claim(worker_id="w", lease_seconds=60)
    assert claim is not None
    return claim.job.key_id


def test_a_backlog_does_not_starve_a_second_key(store: SqlJobStore) -> None:
    for _ in range(500):
        submit(store, A)
    assert claim_key(store) == A
    b_job = submit(store, B)
    b_status = store.get(b_job, key_id=B)
    assert b_status is not None and b_status.queue_position is not None
    assert b_status.queue_position <= 1
    started = [claim_key(store) for _ in range(2)]
    assert B in started


def test_keys_take_turns_then_age_orders(store: SqlJobStore) -> None:
    a_jobs = [submit(store, A) for _ in range(3)]
    b_jobs = [submit(store, B) for _ in range(2)]
    c_job = submit(store, C)
    # Round robin: A B C, then A B, then A.
    expected = [a_jobs[0], b_jobs[0], c_job, a_jobs[1], b_jobs[1], a_jobs[2]]
    positions: dict[str, int] = {}
    for key, job_ids in [(A, a_jobs), (B, b_jobs), (C, [c_job])]:
        for job_id in job_ids:
            found = store.get(job_id, key_id=key)
            assert found is not None and found.queue_position is not None
            positions[job_id] = found.queue_position
    assert sorted(positions, key=positions.__getitem__) == expected
    assert_exact(store)
    taken = []
    while (claim := store.claim(worker_id="w", lease_seconds=60)) is not None:
        taken.append(claim.job.id)
        assert_exact(store)
    assert taken == expected


def test_a_key_that_comes_back_joins_at_the_head(store: SqlJobStore) -> None:
    # A waited long ago and drained; B has a backlog now: A's new job goes next, not last.
    submit(store, A)
    assert claim_key(store) == A
    for _ in range(5):
        submit(store, B)
    assert claim_key(store) == B
    a_job = submit(store, A)
    found = store.get(a_job, key_id=A)
    assert found is not None and found.queue_position == 1
    assert [claim_key(store) for _ in range(2)] == [B, A]


def test_a_released_job_keeps_its_place(store: SqlJobStore) -> None:
    first = submit(store, A)
    submit(store, B)
    claim = store.claim(worker_id="w", lease_seconds=60)
    assert claim is not None and claim.job.id == first
    submit(store, A)
    assert store.release(claim)
    found = store.get(first, key_id=A)
    assert found is not None and found.queue_position == 0
    assert_exact(store)


def test_the_key_cap_counts_only_that_keys_queued_jobs(store: SqlJobStore) -> None:
    for _ in range(3):
        submit(store, A, key_cap=3)
    with pytest.raises(KeyQueueFull) as refused:
        submit(store, A, key_cap=3)
    assert refused.value.limit == 3
    submit(store, B, key_cap=3)  # another key is not held back
    claim_key(store)  # one of A's starts: a slot frees
    submit(store, A, key_cap=3)


def test_the_global_cap_is_checked_before_the_keys(store: SqlJobStore) -> None:
    store.submit(key_id=A, endpoint="e", input={}, max_queued=1, key_max_queued=5)
    with pytest.raises(QueueFull):
        store.submit(key_id=B, endpoint="e", input={}, max_queued=1, key_max_queued=5)


def set_max_running(store: SqlJobStore, key: str, limit: int | None) -> None:
    with writer(store.engine).begin() as conn:
        exists = conn.execute(api_keys.select().where(api_keys.c.id == key)).first()
        if exists is None:
            conn.execute(
                api_keys.insert().values(
                    id=key, name=key, key_hash="-", created_at=0.0, max_running=limit
                )
            )
        else:
            conn.execute(update(api_keys).where(api_keys.c.id == key).values(max_running=limit))


def test_a_key_at_its_running_limit_waits_and_others_go_on(store: SqlJobStore) -> None:
    set_max_running(store, A, 1)
    for _ in range(3):
        submit(store, A)
    submit(store, B)
    first = store.claim(worker_id="w", lease_seconds=60)
    assert first is not None and first.job.key_id == A
    assert claim_key(store) == B
    assert store.claim(worker_id="w", lease_seconds=60) is None  # A runs its one
    assert store.complete(first, result={"outputs": []})
    assert claim_key(store) == A


def test_the_default_running_limit_applies_to_keys_without_their_own(
    store: SqlJobStore,
) -> None:
    store.default_max_running = 2
    set_max_running(store, B, 3)
    for key in (A, A, A, B, B, B):
        submit(store, key)
    taken = []
    while (claim := store.claim(worker_id="w", lease_seconds=60)) is not None:
        taken.append(claim.job.key_id)
    assert sorted(taken) == [A, A, B, B, B]


def test_concurrent_claims_keep_a_keys_running_limit(database_url: str) -> None:
    """Idle workers all wake on the same submit: claiming at once, they still start only as
    many of a key's jobs as it may run."""
    stores = [open_at(database_url) for _ in range(4)]
    try:
        set_max_running(stores[0], A, 1)
        for _ in range(8):
            submit(stores[0], A)
        for round_number in range(5):
            start = threading.Barrier(8)
            taken: list[str] = []

            def claim(
                index: int, start: threading.Barrier = start, taken: list[str] = taken
            ) -> None:
                start.wait()
                claimed = stores[index % 4].claim(worker_id=f"w{index}", lease_seconds=60)
                if claimed is not None:
                    taken.append(claimed.job.id)

            threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            running = [
                job
                for job in stores[0].list_jobs(key_id=A, limit=100).jobs
                if job.state is JobState.RUNNING
            ]
            assert len(running) == 1, (round_number, taken)
            [job] = running  # finished, so the next round may start one
            with writer(stores[0].engine).begin() as conn:
                conn.execute(
                    update(jobs).where(jobs.c.id == job.id).values(state=JobState.SUCCEEDED)
                )
    finally:
        for store in stores:
            store.close()
