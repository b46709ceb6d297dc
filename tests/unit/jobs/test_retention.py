"""Retention (retouch.jobs.retention) on each backend: lifetimes (the default and a key's own),
what an expired job keeps and loses, batches, the lease between two sweepers, uploads, and
the disk usage per key. Jobs are aged by moving their finished_at back, not by waiting."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from retouch.jobs.database import writer
from retouch.jobs.retention import (
    KeyUsage,
    RetentionSweeper,
    record_upload,
    usage_by_key,
)
from retouch.jobs.schema import api_keys, job_logs, jobs, uploads, webhook_deliveries
from retouch.jobs.sql_store import SqlJobStore
from retouch.storage.local import LocalStorage

HOUR = 3600.0


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "outputs")


def add_key(
    store: SqlJobStore,
    key_id: str,
    *,
    results: float | None = None,
    uploads_for: float | None = None,
) -> None:
    with writer(store.engine).begin() as conn:
        conn.execute(
            insert(api_keys).values(
                id=key_id,
                name=key_id,
                key_hash=key_id,
                created_at=time.time(),
                role="user",
                retain_results_seconds=results,
                retain_uploads_seconds=uploads_for,
            )
        )


def finished_job(
    store: SqlJobStore,
    storage: LocalStorage,
    *,
    key: str = "k",
    age: float = 0.0,
    webhook: str | None = None,
) -> str:
    """A succeeded job of `key` with one stored output of 10 bytes, that ended `age` ago."""
    job_id = store.submit(
        key_id=key, endpoint="e", input={"prompt": "p"}, max_queued=1000, webhook_url=webhook
    ).id
    claim = store.claim(worker_id="w", lease_seconds=30)
    assert claim is not None and claim.job.id == job_id
    name = f"{job_id}/0-{claim.lease_token[:8]}.png"
    storage.put(name, b"0123456789")
    store.add_log(job_id, level="info", message="stored")
    assert store.complete(claim, result={"outputs": [{"file": name, "bytes": 10}]})
    age_job(store, job_id, age)
    return job_id


def age_job(store: SqlJobStore, job_id: str, age: float) -> None:
    with writer(store.engine).begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(finished_at=time.time() - age))


def row(store: SqlJobStore, job_id: str) -> dict[str, object]:
    with store.engine.connect() as conn:
        found = conn.execute(select(jobs).where(jobs.c.id == job_id)).one()
    return dict(found._mapping)


def sweeper(store: SqlJobStore, storage: LocalStorage, **options: object) -> RetentionSweeper:
    values: dict[str, object] = {"retain_results": HOUR, "retain_uploads": HOUR, **options}
    return RetentionSweeper(store.engine, storage, **values)  # type: ignore[arg-type]


def test_expired_jobs_lose_files_payloads_and_logs(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    old = finished_job(store, storage, age=2 * HOUR)
    young = finished_job(store, storage, age=HOUR / 2)
    sweeping = sweeper(store, storage)
    report = sweeping.sweep()
    assert report is not None
    assert (report.jobs, report.job_bytes) == (1, 10)
    assert not (storage.root / old).exists()
    assert any((storage.root / young).iterdir())
    expired = row(store, old)
    assert expired["expired_at"] is not None
    assert expired["input"] == "{}" and expired["result"] is None
    assert expired["state"] == "succeeded"  # the row stays, so it can say it expired
    assert store.logs(old) == [] and store.logs(young) != []
    job = store.get(old, key_id="k")
    assert job is not None and job.expired_at is not None
    kept = store.get(young, key_id="k")
    assert kept is not None and kept.expired_at is None and kept.result is not None
    # A second sweep finds nothing more.
    again = sweeping.sweep()
    assert again is not None and not again.deleted_anything


def test_failed_and_cancelled_jobs_expire_but_unfinished_never(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    failed = store.submit(key_id="k", endpoint="e", input={"n": 1}, max_queued=100).id
    claim = store.claim(worker_id="w", lease_seconds=30)
    assert claim is not None and store.fail(claim, code="x", message="y")
    cancelled = store.submit(key_id="k", endpoint="e", input={"n": 1}, max_queued=100).id
    assert store.cancel(cancelled, key_id="k") is not None
    running = store.submit(key_id="k", endpoint="e", input={"n": 1}, max_queued=100).id
    assert store.claim(worker_id="w", lease_seconds=30) is not None
    queued = store.submit(key_id="k", endpoint="e", input={"n": 1}, max_queued=100).id
    for job_id in (failed, cancelled, running, queued):
        age_job(store, job_id, 2 * HOUR)  # finished_at on unfinished jobs: still not swept
    report = sweeper(store, storage).sweep()
    assert report is not None and report.jobs == 2
    assert row(store, failed)["expired_at"] is not None
    assert row(store, failed)["error_code"] == "x"  # small, kept
    assert row(store, cancelled)["expired_at"] is not None
    assert row(store, running)["expired_at"] is None
    assert row(store, queued)["expired_at"] is None


def test_a_keys_own_lifetime_overrides_the_default(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    add_key(store, "brief", results=60.0)
    add_key(store, "patient", results=100 * HOUR)
    add_key(store, "usual")  # NULL: the default
    brief = finished_job(store, storage, key="brief", age=120.0)
    patient = finished_job(store, storage, key="patient", age=50 * HOUR)
    usual = finished_job(store, storage, key="usual", age=2 * HOUR)
    usual_young = finished_job(store, storage, key="usual", age=120.0)
    sweeping = sweeper(store, storage)
    report = sweeping.sweep()
    assert report is not None and report.jobs == 2
    assert row(store, brief)["expired_at"] is not None
    assert row(store, usual)["expired_at"] is not None
    assert row(store, patient)["expired_at"] is None
    assert row(store, usual_young)["expired_at"] is None
    # Past its own lifetime, the patient key's job goes too (the sweep's floor let it by).
    age_job(store, patient, 101 * HOUR)
    later = sweeping.sweep()
    assert later is not None and later.jobs == 1


def test_batches_take_every_expired_job(store: SqlJobStore, storage: LocalStorage) -> None:
    ids = [finished_job(store, storage, age=2 * HOUR + i) for i in range(7)]
    report = sweeper(store, storage, batch_size=3).sweep()
    assert report is not None and report.jobs == 7 and report.job_bytes == 70
    assert all(row(store, job_id)["expired_at"] is not None for job_id in ids)
    assert list(storage.root.iterdir()) == []


def test_a_pending_webhook_is_given_up_and_its_row_kept(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    job_id = finished_job(store, storage, age=2 * HOUR, webhook="http://127.0.0.1:9/hook")
    assert store.delivery(job_id) is not None
    report = sweeper(store, storage).sweep()
    assert report is not None and report.jobs == 1
    with store.engine.connect() as conn:
        delivery = conn.execute(
            select(webhook_deliveries.c.state).where(webhook_deliveries.c.job_id == job_id)
        ).one()
    assert delivery.state == "failed"
    assert store.claim_deliveries(limit=10, lease_seconds=30) == []


def test_one_sweeper_holds_the_lease_at_a_time(store: SqlJobStore, storage: LocalStorage) -> None:
    first = sweeper(store, storage, holder="first", lease_seconds=30.0)
    second = sweeper(store, storage, holder="second", lease_seconds=30.0)
    finished_job(store, storage, age=2 * HOUR)
    assert first.take_lease()
    assert not second.take_lease()
    assert second.sweep() is None  # it sweeps nothing while the first holds the lease
    assert first.take_lease()  # renewing is taking it again
    report = first.sweep()
    assert report is not None and report.jobs == 1
    first.release_lease()
    assert second.take_lease()
    assert not first.take_lease()


def test_an_expired_lease_is_taken_over(store: SqlJobStore, storage: LocalStorage) -> None:
    dead = sweeper(store, storage, holder="dead", lease_seconds=0.2)
    alive = sweeper(store, storage, holder="alive", lease_seconds=30.0)
    assert dead.take_lease()
    assert not alive.take_lease()
    time.sleep(0.3)
    assert alive.take_lease()
    assert not dead.take_lease()


def test_expired_uploads_lose_file_and_row(store: SqlJobStore, storage: LocalStorage) -> None:
    add_key(store, "brief", uploads_for=60.0)
    names = {
        "old": "00000000-0000-0000-0000-000000000001/upload.png",
        "young": "00000000-0000-0000-0000-000000000002/upload.png",
        "brief": "00000000-0000-0000-0000-000000000003/upload.png",
        "refreshed": "00000000-0000-0000-0000-000000000004/upload.png",
    }
    owners = {"old": "k", "young": "k", "brief": "brief", "refreshed": "k"}
    ages = {"old": 2 * HOUR, "young": HOUR / 2, "brief": 120.0, "refreshed": 2 * HOUR}
    for label, name in names.items():
        storage.put(name, b"x" * 5)
        record_upload(store.engine, name=name, key_id=owners[label], size=5)
        with writer(store.engine).begin() as conn:
            conn.execute(
                update(uploads)
                .where(uploads.c.name == name)
                .values(created_at=time.time() - ages[label])
            )
    # Uploaded again: the same name's lifetime starts again.
    record_upload(store.engine, name=names["refreshed"], key_id="k", size=5)
    report = sweeper(store, storage).sweep()
    assert report is not None and (report.uploads, report.upload_bytes) == (2, 10)
    assert storage.stat(names["old"]) is None and storage.stat(names["brief"]) is None
    assert storage.stat(names["young"]) is not None
    assert storage.stat(names["refreshed"]) is not None
    with store.engine.connect() as conn:
        left = set(conn.execute(select(uploads.c.name)).scalars())
    assert left == {names["young"], names["refreshed"]}


def test_usage_by_key_sums_live_outputs_and_uploads(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    finished_job(store, storage, key="a")
    finished_job(store, storage, key="a")
    finished_job(store, storage, key="b", age=2 * HOUR)  # expires below
    record_upload(
        store.engine, name="00000000-0000-0000-0000-00000000000a/upload.png", key_id="c", size=123
    )
    assert usage_by_key(store.engine) == {
        "a": KeyUsage(20, 0),
        "b": KeyUsage(10, 0),
        "c": KeyUsage(0, 123),
    }
    sweeper(store, storage, holder="once").sweep()
    assert usage_by_key(store.engine) == {"a": KeyUsage(20, 0), "c": KeyUsage(0, 123)}


def test_the_thread_sweeps_and_hands_the_lease_back(
    store: SqlJobStore, storage: LocalStorage
) -> None:
    job_id = finished_job(store, storage, age=2 * HOUR)
    running = sweeper(store, storage, interval=0.05, holder="thread")
    running.start()
    try:
        deadline = time.monotonic() + 10
        while row(store, job_id)["expired_at"] is None:
            assert time.monotonic() < deadline, "the sweeper thread did not sweep"
            time.sleep(0.02)
    finally:
        running.stop()
    assert sweeper(store, storage, holder="next").take_lease()  # released at stop


def test_logs_of_other_jobs_are_kept(store: SqlJobStore, storage: LocalStorage) -> None:
    old = finished_job(store, storage, age=2 * HOUR)
    young = finished_job(store, storage)
    sweeper(store, storage).sweep()
    with store.engine.connect() as conn:
        logged = set(conn.execute(select(job_logs.c.job_id)).scalars())
    assert young in logged and old not in logged
