"""What the store's hot paths cost as the queue grows, in-process, on either backend.

Fills the queue with N queued jobs (one bulk insert: the same rows `submit` writes), then
prints: status polls per second (`store.get`, one thread) on the job at the head of the queue
and on the one at its tail, and submit latency p50/p99 from one thread and with 32 threads
submitting at once against that queue (each submits again as soon as it is answered, so p50
cannot be below 32 / the submits per second). Runs on any revision of the store, so running
it before and after a change compares the two. The API's own costs around these calls are
in bench/api_overhead.py.

    .venv/bin/python bench/queue_cost.py [--queued 50000] [--poll-seconds 2]
        [--submitters 32] [--submits-per-thread 30] [--database-url URL]

--database-url: sqlite:///PATH (a new file; default, a temp one), or
postgresql+psycopg://USER@HOST:PORT/DB, where a scratch database is created on that server
(DB is only used to create and drop it) and dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

from retouch.contract.states import JobState
from retouch.jobs.database import POSTGRES_DRIVER, parse_database_url, writer
from retouch.jobs.open_store import open_store
from retouch.jobs.schema import jobs
from retouch.jobs.sql_store import SqlJobStore

KEY = "bench"
INPUT = json.dumps({"prompt": "a cat", "image_uri": "https://example.com/a.png"})
FILL_BATCH = 5000


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@contextmanager
def scratch_database(url: str | None) -> Iterator[str]:
    """The URL of an empty database on the backend `url` names, removed afterwards."""
    if url is None:
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{Path(folder) / 'queue.db'}"
        return
    parsed = parse_database_url(url)
    if parsed.drivername != POSTGRES_DRIVER:
        if Path(str(parsed.database)).exists():
            raise SystemExit(f"{parsed.database} exists: name a new file")
        yield url
        return
    name = f"retouch_bench_{secrets.token_hex(6)}"
    admin = create_engine(parsed, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def fill(store: SqlJobStore, count: int) -> tuple[str, str]:
    """`count` queued jobs, inserted in bulk; the ids of the first and the last."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    now = time.time()
    with writer(store.engine).begin() as conn:
        for start in range(0, count, FILL_BATCH):
            rows = [
                {
                    "id": job_id,
                    "key_id": KEY,
                    "endpoint": "edit",
                    "input": INPUT,
                    "state": JobState.QUEUED,
                    "attempts": 0,
                    "created_at": now,
                }
                for job_id in ids[start : start + FILL_BATCH]
            ]
            # One statement per batch, not one per row: the same rows, and the triggers
            # counting the queue run once per statement.
            conn.execute(jobs.insert().values(rows))
    if store.engine.dialect.name == "postgresql":
        # Fresh statistics and visibility map, as autovacuum leaves a queue this size.
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    return ids[0], ids[-1]


def polls_per_second(store: SqlJobStore, job_id: str, seconds: float) -> tuple[float, int]:
    """Status polls of one job per second, and its queue position."""
    job = store.get(job_id, key_id=KEY)
    assert job is not None and job.queue_position is not None
    for _ in range(200):  # warm the statement cache and the pages
        store.get(job_id, key_id=KEY)
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            store.get(job_id, key_id=KEY)
        done += 100
    return done / (time.perf_counter() - started), job.queue_position


def submit_latencies(store: SqlJobStore, threads: int, per_thread: int) -> list[float]:
    """Seconds each submit took, with `threads` threads submitting at once."""
    start = threading.Barrier(threads)
    latencies: list[float] = []
    lock = threading.Lock()

    def submitter() -> None:
        mine: list[float] = []
        start.wait()
        for _ in range(per_thread):
            began = time.perf_counter()
            store.submit(key_id=KEY, endpoint="edit", input={"n": 1}, max_queued=10**9)
            mine.append(time.perf_counter() - began)
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=submitter) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queued", type=int, default=50_000)
    parser.add_argument("--poll-seconds", type=float, default=2.0)
    parser.add_argument("--submitters", type=int, default=32)
    parser.add_argument("--submits-per-thread", type=int, default=30)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    with scratch_database(args.database_url) as url:
        store = open_store(url, max_attempts=3, webhook_retry_seconds=86400.0)
        try:
            backend = store.engine.dialect.name
            began = time.perf_counter()
            head, tail = fill(store, args.queued)
            print(f"{backend}: {args.queued} queued jobs in {time.perf_counter() - began:.1f} s")
            head_rate, head_position = polls_per_second(store, head, args.poll_seconds)
            tail_rate, tail_position = polls_per_second(store, tail, args.poll_seconds)
            print(f"  poll, head (position {head_position}): {head_rate:,.0f}/s")
            print(
                f"  poll, tail (position {tail_position}): {tail_rate:,.0f}/s "
                f"({tail_rate / head_rate:.2f}x the head)"
            )
            # One thread submits as many as all the threads together, for a p99 of as many.
            for threads, each in (
                (1, args.submitters * args.submits_per_thread),
                (args.submitters, args.submits_per_thread),
            ):
                began = time.perf_counter()
                latencies = submit_latencies(store, threads, each)
                elapsed = time.perf_counter() - began
                print(
                    f"  submit, {threads} thread{'s at once' if threads > 1 else ''}: "
                    f"p50 {statistics.median(latencies) * 1000:.1f} ms, "
                    f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, "
                    f"max {max(latencies) * 1000:.1f} ms, {len(latencies) / elapsed:,.0f}/s"
                )
        finally:
            store.close()


if __name__ == "__main__":
    main()
