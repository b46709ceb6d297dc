"""Queue positions and the queue cap come from queue_buckets, which triggers on jobs keep
(migrations 0006, 0007): they must stay exact through every way a job enters or leaves the queue,
whichever statement moves it, on both backends."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from alembic import command
from sqlalchemy import delete, func, select, text, update

from retouch.contract.states import JobState
from retouch.jobs.database import migrate, migration_config, open_engine, writer
from retouch.jobs.models import Claim, QueueFull
from retouch.jobs.schema import QUEUE_BUCKET_SIZES, jobs, queue_buckets
from retouch.jobs.sql_store import SqlJobStore

from ..databases import open_at

KEY = "k"


def submit(store: SqlJobStore, endpoint: str = "a") -> str:
    return store.submit(key_id=KEY, endpoint=endpoint, input={}, max_queued=10**6).id


def positions(store: SqlJobStore, ids: list[str]) -> list[int | None]:
    found = [store.get(job_id, key_id=KEY) for job_id in ids]
    return [job.queue_position if job else None for job in found]


def job_rows(conn: Any) -> list[Any]:
    columns = (jobs.c.seq, jobs.c.queue_round, jobs.c.id, jobs.c.key_id, jobs.c.state)
    return list(conn.execute(select(*columns)).all())


def expected_buckets(queued_rounds: list[int]) -> dict[tuple[int, int], int]:
    """What queue_buckets must hold, counted by brute force."""
    counted: Counter[tuple[int, int]] = Counter()
    for queue_round in queued_rounds:
        for level, size in enumerate(QUEUE_BUCKET_SIZES):
            counted[(level, queue_round // size)] += 1
    return dict(counted)


def assert_exact(store: SqlJobStore, rng: random.Random | None = None, sample: int = 0) -> None:
    """The buckets match a brute-force count, and the positions `get` answers (every job's,
    or `sample` of them picked by `rng`) are each queued job's rank among the queued."""
    with store.engine.connect() as conn:
        rows = job_rows(conn)
        buckets = {(r.level, r.bucket): r.queued for r in conn.execute(select(queue_buckets))}
    queued = sorted((r.queue_round, r.seq) for r in rows if r.state == JobState.QUEUED)
    assert buckets == expected_buckets([queue_round for queue_round, _ in queued])
    rank = {seq: index for index, (_, seq) in enumerate(queued)}
    checked = rows if rng is None else rng.sample(rows, min(sample, len(rows)))
    for row in checked:
        job = store.get(row.id, key_id=row.key_id)
        assert job is not None
        assert job.queue_position == rank.get(row.seq), (row.seq, row.state)


def insert_at(store: SqlJobStore, seqs: list[int], state: str = JobState.QUEUED) -> None:
    """Jobs at these seqs and rounds, in one statement (many rows, many buckets), as a
    restore or an operator's SQL could write them."""
    rows = [
        {
            "seq": seq,
            "queue_round": seq,
            "id": str(uuid.uuid4()),
            "key_id": KEY,
            "endpoint": "a",
            "input": "{}",
            "state": state,
            "attempts": 0,
            "created_at": time.time(),
        }
        for seq in seqs
    ]
    with writer(store.engine).begin() as conn:
        conn.execute(jobs.insert().values(rows))
        if store.engine.dialect.name == "postgresql":
            # Later submits draw seqs above these.
            conn.execute(
                text("SELECT setval(pg_get_serial_sequence('jobs', 'seq'), max(seq)) FROM jobs")
            )


def test_positions_through_every_transition(store: SqlJobStore) -> None:
    ids = [submit(store) for _ in range(6)]
    assert positions(store, ids) == list(range(6))
    assert_exact(store)
    claim = store.claim(worker_id="w", lease_seconds=30)
    assert claim is not None and claim.job.id == ids[0]
    assert_exact(store)
    assert store.cancel(ids[2], key_id=KEY) is not None
    assert_exact(store)
    assert store.release(claim)
    assert_exact(store)
    # A lease that is over at once, reaped: the job is queued again, at its own place.
    lost = store.claim(worker_id="w", lease_seconds=-1, reap=False)
    assert lost is not None
    assert_exact(store)
    assert store.reap_expired().requeued == (lost.job.id,)
    assert_exact(store)
    with writer(store.engine).begin() as conn:
        conn.execute(delete(jobs).where(jobs.c.id.in_([ids[3], ids[2]])))
    assert_exact(store)
    done = store.claim(worker_id="w", lease_seconds=30)
    assert done is not None and store.complete(done, result={"outputs": []})
    assert_exact(store)
    assert positions(store, [ids[1], ids[4], ids[5]]) == [0, 1, 2]


def test_the_queue_cap_counts_exactly_what_is_queued(store: SqlJobStore) -> None:
    insert_at(store, [5, 70, 5000, 9000])
    submit(store)
    claim = store.claim(worker_id="w", lease_seconds=30)
    assert claim is not None
    with pytest.raises(QueueFull):
        store.submit(key_id=KEY, endpoint="a", input={}, max_queued=4)
    store.submit(key_id=KEY, endpoint="a", input={}, max_queued=5)


def test_concurrent_submits_never_pass_the_cap(database_url: str) -> None:
    stores = [open_at(database_url) for _ in range(4)]
    start = threading.Barrier(16)
    outcomes: list[str] = []

    def send(index: int) -> None:
        start.wait()
        try:
            stores[index % 4].submit(key_id=KEY, endpoint="a", input={}, max_queued=5)
            outcomes.append("queued")
        except QueueFull:
            outcomes.append("full")

    threads = [threading.Thread(target=send, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["full"] * 11 + ["queued"] * 5
    assert_exact(stores[0])
    for store in stores:
        store.close()


def test_a_random_sequence_matches_a_brute_force_count(store: SqlJobStore) -> None:
    rng = random.Random(10)
    fine, coarse = QUEUE_BUCKET_SIZES
    # Scattered over several coarse buckets and many fine ones, with a few on their edges.
    edges = [coarse - 1, coarse, 2 * coarse + fine - 1, 2 * coarse + fine]
    insert_at(store, sorted(set(rng.sample(range(1, 5 * coarse), 80)) | set(edges)))
    insert_at(store, [6 * coarse + i for i in range(5)], state=JobState.SUCCEEDED)
    claims: list[Claim] = []

    def state_seqs(*states: str) -> list[int]:
        with store.engine.connect() as conn:
            return [r.seq for r in job_rows(conn) if r.state in states]

    def pick(seqs: list[int], most: int) -> list[int]:
        return rng.sample(seqs, rng.randint(0, min(most, len(seqs))))

    def write(statement: Any) -> None:
        with writer(store.engine).begin() as conn:
            conn.execute(statement)

    def unused_seqs(count: int) -> list[int]:
        taken = set(state_seqs(*JobState))
        free = [s for s in range(1, 7 * coarse) if s not in taken]
        return sorted(rng.sample(free, count))

    def do_submit() -> None:
        submit(store, rng.choice("ab"))

    def do_claim() -> None:
        endpoints = rng.choice([None, ["a"], ["b"]])
        claim = store.claim(worker_id="w", lease_seconds=30, endpoints=endpoints)
        if claim is not None:
            claims.append(claim)

    def do_finish() -> None:
        if claims:
            claim = claims.pop(rng.randrange(len(claims)))
            action = rng.choice([store.release, store.complete, store.fail, store.cancel])
            if action == store.complete:
                store.complete(claim, result={"outputs": []})
            elif action == store.fail:
                store.fail(claim, code="x", message="y")
            elif action == store.cancel:
                store.cancel(claim.job.id, key_id=KEY, running_too=True)
            else:
                store.release(claim)

    def do_lose() -> None:
        for _ in range(rng.randint(1, 3)):
            store.claim(worker_id="w", lease_seconds=-1, reap=False)
        store.reap_expired()

    def do_cancel() -> None:
        for seq in pick(state_seqs(JobState.QUEUED), 3):
            with store.engine.connect() as conn:
                job_id = conn.execute(select(jobs.c.id).where(jobs.c.seq == seq)).scalar_one()
            store.cancel(job_id, key_id=KEY)

    def do_requeue_many() -> None:
        # One statement moving jobs of many buckets back into the queue.
        chosen = pick(state_seqs(JobState.CANCELLED, JobState.SUCCEEDED, JobState.FAILED), 20)
        write(update(jobs).where(jobs.c.seq.in_(chosen)).values(state=JobState.QUEUED))

    def do_end_many() -> None:
        chosen = pick(state_seqs(JobState.QUEUED), 20)
        write(update(jobs).where(jobs.c.seq.in_(chosen)).values(state=JobState.CANCELLED))

    def do_delete_many() -> None:
        write(delete(jobs).where(jobs.c.seq.in_(pick(state_seqs(*JobState), 15))))

    def do_insert_many() -> None:
        insert_at(store, unused_seqs(rng.randint(1, 10)), state=rng.choice(list(JobState)))

    def do_move() -> None:
        # A queued job given another seq leaves its buckets for the new ones.
        queued = state_seqs(JobState.QUEUED)
        if queued:
            (target,) = unused_seqs(1)
            write(update(jobs).where(jobs.c.seq == rng.choice(queued)).values(seq=target))

    actions = [
        do_submit,
        do_claim,
        do_finish,
        do_lose,
        do_cancel,
        do_requeue_many,
        do_end_many,
        do_delete_many,
        do_insert_many,
        do_move,
    ]
    for _ in range(120):
        rng.choice(actions)()
        assert_exact(store, rng, sample=6)
    assert_exact(store)


def test_concurrent_writers_keep_the_buckets_exact(database_url: str) -> None:
    stores = [open_at(database_url) for _ in range(4)]
    fine = QUEUE_BUCKET_SIZES[0]
    # Queued jobs across buckets, all of whose leases run out: reapers at once requeue jobs
    # of the same buckets (on PostgreSQL, they lock bucket rows in one order: no deadlock).
    insert_at(stores[0], [i * (fine + 1) for i in range(1, 120)])
    for _ in range(60):
        stores[0].claim(worker_id="w", lease_seconds=-1, reap=False)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        store = stores[index % len(stores)]
        try:
            if index % 3 == 0:
                store.reap_expired()
            elif index % 3 == 1:
                for _ in range(10):
                    submit(store)
            else:
                for _ in range(10):
                    claim = store.claim(worker_id="w", lease_seconds=30, reap=False)
                    if claim is not None and index % 2:
                        store.release(claim)
                    elif claim is not None:
                        store.complete(claim, result={})
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert_exact(stores[0])
    for store in stores:
        store.close()


def test_the_migration_counts_the_jobs_already_queued(unmigrated_database_url: str) -> None:
    engine = open_engine(unmigrated_database_url)
    config = migration_config()

    def migrate_to(revision: str, downgrade: bool = False) -> None:
        with writer(engine).begin() as conn:
            config.attributes["connection"] = conn
            (command.downgrade if downgrade else command.upgrade)(config, revision)

    migrate_to("0005")
    before = [
        {
            "id": str(uuid.uuid4()),
            "key_id": KEY,
            "endpoint": "a",
            "input": "{}",
            "state": state,
            "attempts": 0,
            "created_at": 0.0,
        }
        for state in [JobState.QUEUED] * 70 + [JobState.RUNNING] * 5
    ]
    with writer(engine).begin() as conn:
        conn.execute(jobs.insert().values(before))
    migrate(engine)
    store = SqlJobStore(engine)
    assert_exact(store)
    # Down again: the triggers go with the table, and jobs are written as before 0006.
    migrate_to("0005", downgrade=True)
    with writer(engine).begin() as conn:
        conn.execute(update(jobs).values(state=JobState.CANCELLED))
        assert conn.execute(select(func.count()).select_from(jobs)).scalar_one() == 75
    store.close()
