"""The job store on SQLAlchemy Core, on SQLite (embedded, one host) or PostgreSQL (many hosts).

One class serves both; it branches on the dialect only where the SQL must differ:
- Concurrency. SQLite writers take the whole database's write lock at BEGIN IMMEDIATE, so a
  select-then-update is atomic. PostgreSQL has no such lock: claims lock the row they take
  (FOR UPDATE SKIP LOCKED, which renders nothing on SQLite), and an Idempotency-Key is
  claimed by inserting it (ON CONFLICT DO NOTHING), so concurrent submits make one job.
- Time. Leases are compared across hosts on PostgreSQL, so they run on the database's clock;
  SQLite is one host and uses the local clock (no extra work on its paths).
- Change notification: see retouch.jobs.changes.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    Float,
    Integer,
    Select,
    and_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    extract,
    func,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from retouch.contract import idempotency
from retouch.contract.states import JobState
from retouch.jobs.changes import CHANNEL, PAYLOAD, watch_changes
from retouch.jobs.database import migrate, open_sqlite, writer
from retouch.jobs.models import (
    Claim,
    Delivery,
    DeliveryAttempt,
    DeliveryRecord,
    Idempotency,
    IdempotencyConflict,
    Job,
    LogLine,
    QueueFull,
    RequestPage,
    WorkerRecord,
)
from retouch.jobs.schema import (
    QUEUE_BUCKET_SIZES,
    idempotency_keys,
    job_logs,
    jobs,
    queue_buckets,
    webhook_attempts,
    webhook_deliveries,
    workers,
)
from retouch.jobs.store import WORKER_LOST, JobChanges, Reaped

# An Idempotency-Key answers its first request for this long.
IDEMPOTENCY_SECONDS = idempotency.KEPT_SECONDS


def _queued_in_buckets(level: int, *where: ColumnElement[bool]) -> Select[int]:
    return select(func.coalesce(func.sum(queue_buckets.c.queued), 0)).where(
        queue_buckets.c.level == level, *where
    )


def _constant(value: int) -> ColumnElement[int]:
    """An integer written into the SQL, not bound: the database divides by a constant."""
    return literal_column(str(value), Integer())


_AHEAD = jobs.alias("ahead")
_FINE, _COARSE = QUEUE_BUCKET_SIZES
_FINE_BUCKET = jobs.c.seq // _constant(_FINE)
_COARSE_BUCKET = jobs.c.seq // _constant(_COARSE)
# The jobs queued ahead in the coarse buckets below this job's, in the fine buckets below its
# own within its coarse one, and in its fine bucket: a few rows and fewer than 64 index
# entries, however long the queue ahead (see schema.queue_buckets). In the same statement as
# the job itself, so one snapshot: exact. Only for a queued job (CASE evaluates nothing
# otherwise).
_QUEUE_POSITION = case(
    (
        jobs.c.state == JobState.QUEUED,
        _queued_in_buckets(1, queue_buckets.c.bucket < _COARSE_BUCKET).scalar_subquery()
        + _queued_in_buckets(
            0,
            queue_buckets.c.bucket >= _COARSE_BUCKET * _constant(_COARSE // _FINE),
            queue_buckets.c.bucket < _FINE_BUCKET,
        ).scalar_subquery()
        + select(func.count())
        .select_from(_AHEAD)
        .where(
            _AHEAD.c.state == JobState.QUEUED,
            _AHEAD.c.seq >= _FINE_BUCKET * _constant(_FINE),
            _AHEAD.c.seq < jobs.c.seq,
        )
        .scalar_subquery(),
    ),
    else_=None,
).label("queue_position")
# Every queued job, for the queue cap: one row per coarse bucket.
_QUEUED_COUNT = _queued_in_buckets(1)
# PostgreSQL: held by a submit from its count of the queue to its commit. Any fixed 64-bit
# number other than database.MIGRATION_LOCK_ID would do.
_QUEUE_CAP_LOCK_ID = 0x7265746F75636871  # "retouchq"
_LOCK_QUEUE_CAP = select(func.pg_advisory_xact_lock(_QUEUE_CAP_LOCK_ID))

_WITHOUT_INPUT = [c for c in jobs.c if c.name != "input"]
# Built once: a status poll (or a submit, under SQLite's write lock) then skips statement
# construction, its largest cost.
_INSERT_JOB = jobs.insert()
_JOB_BY_ID = select(jobs).where(jobs.c.id == bindparam("job_id"))
_GET_JOB = select(*_WITHOUT_INPUT, _QUEUE_POSITION).where(
    jobs.c.id == bindparam("job_id"), jobs.c.key_id == bindparam("key_id")
)


# The database server's clock, in the float seconds of the time columns. clock_timestamp(),
# not now(): now() is frozen at the start of the transaction.
_POSTGRES_NOW = cast(extract("epoch", func.clock_timestamp()), Float)

# How a write tells the watchers which jobs it changed (see retouch.jobs.changes), built once.
_NOTIFIED = jobs.c.id.in_(bindparam("job_ids", expanding=True))
_PG_NOTIFY = select(func.pg_notify(CHANNEL, PAYLOAD)).where(_NOTIFIED)
_LATEST_CHANGE = jobs.alias("latest")
_STAMP_CHANGE = (
    update(jobs)
    .where(_NOTIFIED)
    .values(
        change_seq=select(
            func.coalesce(func.max(_LATEST_CHANGE.c.change_seq), 0) + 1
        ).scalar_subquery()
    )
)


class SqlJobStore:
    def __init__(
        self, engine: Engine, *, max_attempts: int = 3, webhook_retry_seconds: float = 86400.0
    ) -> None:
        self.engine = engine
        self.local_reads = engine.dialect.name == "sqlite"
        self._writer = writer(engine)
        self.max_attempts = max_attempts
        self.webhook_retry_seconds = webhook_retry_seconds
        self._postgres = engine.dialect.name == "postgresql"
        # Reads take no transaction, as on SQLite (see database.open_sqlite): on PostgreSQL
        # that saves the BEGIN and ROLLBACK round trips, half the cost of a status poll.
        self._reader = (
            engine.execution_options(isolation_level="AUTOCOMMIT") if self._postgres else engine
        )
        self._changes = watch_changes(engine)

    @classmethod
    def open_sqlite(
        cls, path: Path, *, max_attempts: int = 3, webhook_retry_seconds: float = 86400.0
    ) -> SqlJobStore:
        engine = open_sqlite(path)
        migrate(engine)
        return cls(engine, max_attempts=max_attempts, webhook_retry_seconds=webhook_retry_seconds)

    # --- API side -------------------------------------------------------------------

    def submit(
        self,
        *,
        key_id: str,
        endpoint: str,
        input: dict[str, Any],
        max_queued: int,
        webhook_url: str | None = None,
        base_url: str | None = None,
        idempotency: Idempotency | None = None,
    ) -> Job:
        job_id = str(uuid.uuid4())
        now = time.time()
        # Built before the transaction: on SQLite every writer of the process waits while
        # one holds the write lock, so what need not run under it does not.
        new_job = {
            "id": job_id,
            "key_id": key_id,
            "endpoint": endpoint,
            "input": json.dumps(input, separators=(",", ":")),
            "state": JobState.QUEUED,
            "attempts": 0,
            "created_at": now,
            "webhook_url": webhook_url,
            "base_url": base_url,
        }
        with self._writer.begin() as conn:
            if idempotency is not None:
                original = self._idempotent_original(conn, key_id, idempotency, job_id, now)
                if original is not None:
                    return original
            if self._postgres:
                # Submits take turns from here to their commit, so each counts every job
                # queued before it and the cap holds exactly (SQLite's write lock does the
                # same). They queued on the newest bucket's row anyway, which every insert
                # updates; taking turns here instead measured no slower.
                conn.execute(_LOCK_QUEUE_CAP)
            queued = conn.execute(_QUEUED_COUNT).scalar_one()
            if queued >= max_queued:
                raise QueueFull(f"{queued} jobs are already queued")
            conn.execute(_INSERT_JOB, new_job)
            self._notify(conn, [job_id])
            row = conn.execute(_JOB_BY_ID, {"job_id": job_id}).one()
        return Job.from_row(row)

    def _idempotent_original(
        self, conn: Any, key_id: str, idempotency: Idempotency, job_id: str, now: float
    ) -> Job | None:
        """Claim the key for the job `job_id` about to be made and return None; or, when an
        earlier submit holds it, its job (replayed=True), or IdempotencyConflict when it was
        for another request. An expired key is forgotten and claimed anew."""
        # Expired keys are forgotten here, on the write path that uses them: no sweeper needed.
        conn.execute(
            delete(idempotency_keys).where(
                idempotency_keys.c.created_at < now - IDEMPOTENCY_SECONDS
            )
        )
        # The key is claimed by inserting it; the row then names the winner. SQLite: the write
        # lock already serialises submits. PostgreSQL: a concurrent insert of the same key
        # waits for the first transaction and does nothing if it committed; the read below
        # sees that row (read committed: each statement sees what committed before it). If
        # this submit fails later (the queue is full), its transaction takes the key back.
        insert = postgresql.insert if self._postgres else sqlite.insert
        conn.execute(
            insert(idempotency_keys)
            .values(
                key_id=key_id,
                idempotency_key=idempotency.key,
                request_hash=idempotency.request_hash,
                job_id=job_id,
                created_at=now,
            )
            .on_conflict_do_nothing()
        )
        seen = conn.execute(
            select(idempotency_keys.c.request_hash, idempotency_keys.c.job_id).where(
                idempotency_keys.c.key_id == key_id,
                idempotency_keys.c.idempotency_key == idempotency.key,
            )
        ).one()
        if seen.job_id == job_id:
            return None
        if seen.request_hash != idempotency.request_hash:
            raise IdempotencyConflict(seen.job_id)
        row = conn.execute(_GET_JOB, {"job_id": seen.job_id, "key_id": key_id}).one()
        return replace(Job.from_row(row), replayed=True)

    def get(self, job_id: str, *, key_id: str) -> Job | None:
        with self._reader.connect() as conn:
            row = conn.execute(_GET_JOB, {"job_id": job_id, "key_id": key_id}).one_or_none()
        return Job.from_row(row) if row else None

    def list_jobs(self, *, key_id: str, limit: int, before: int | None = None) -> RequestPage:
        query = select(*_WITHOUT_INPUT).where(jobs.c.key_id == key_id)
        if before is not None:
            query = query.where(jobs.c.seq < before)
        with self._reader.connect() as conn:
            rows = conn.execute(query.order_by(jobs.c.seq.desc()).limit(limit + 1)).all()
        page = [Job.from_row(row) for row in rows[:limit]]
        more = len(rows) > limit
        return RequestPage(jobs=page, next_cursor=page[-1].seq if more else None)

    def cancel(
        self, job_id: str, *, key_id: str, running_too: bool = False
    ) -> tuple[Job, bool] | None:
        cancellable = [JobState.QUEUED, JobState.RUNNING] if running_too else [JobState.QUEUED]
        with self._writer.begin() as conn:
            cancelled = conn.execute(
                update(jobs)
                .where(
                    jobs.c.id == job_id,
                    jobs.c.key_id == key_id,
                    jobs.c.state.in_(cancellable),
                )
                .values(
                    state=JobState.CANCELLED,
                    finished_at=time.time(),
                    lease_token=None,
                    lease_expires_at=None,
                )
            ).rowcount
            row = conn.execute(
                select(jobs).where(jobs.c.id == job_id, jobs.c.key_id == key_id)
            ).one_or_none()
            if cancelled:
                self._log(conn, job_id, "info", "cancelled at the client's request")
                self._enqueue_webhooks(conn, [job_id])
                self._notify(conn, [job_id])
        if row is None:
            return None
        return Job.from_row(row), cancelled == 1

    # --- worker side ----------------------------------------------------------------

    def claim(
        self,
        *,
        worker_id: str,
        lease_seconds: float,
        endpoints: Sequence[str] | None = None,
        reap: bool = True,
    ) -> Claim | None:
        if reap:
            self.reap_expired()
        token = str(uuid.uuid4())
        now = time.time()
        queued = select(jobs.c.seq).where(jobs.c.state == JobState.QUEUED)
        if endpoints is not None:
            queued = queued.where(jobs.c.endpoint.in_(list(endpoints)))
        # SQLite: the write lock is held from BEGIN IMMEDIATE, so no other claimer sees this
        # row as queued between the select and the update. PostgreSQL: the row is locked, and
        # other claimers skip it and take the next one instead of waiting.
        oldest = queued.order_by(jobs.c.seq).limit(1).with_for_update(skip_locked=True)
        with self._writer.begin() as conn:
            seq = conn.execute(oldest).scalar_one_or_none()
            if seq is None:
                return None
            conn.execute(
                update(jobs)
                .where(jobs.c.seq == seq)
                .values(
                    state=JobState.RUNNING,
                    attempts=jobs.c.attempts + 1,
                    lease_token=token,
                    lease_expires_at=self._lease_now() + lease_seconds,
                    worker_id=worker_id,
                    started_at=now,
                    progress_step=None,
                    progress_total=None,
                )
            )
            row = conn.execute(select(jobs).where(jobs.c.seq == seq)).one()
            self._log(conn, row.id, "info", f"started by {worker_id} (attempt {row.attempts})")
            self._notify(conn, [row.id])
        return Claim(job=Job.from_row(row), lease_token=token)

    def _holder(self, claim: Claim) -> Any:
        return and_(
            jobs.c.id == claim.job.id,
            jobs.c.state == JobState.RUNNING,
            jobs.c.lease_token == claim.lease_token,
        )

    def _update_held(self, claim: Claim, **values: Any) -> bool:
        with self._writer.begin() as conn:
            held = conn.execute(update(jobs).where(self._holder(claim)).values(**values)).rowcount
            if held and values.get("state") in (JobState.SUCCEEDED, JobState.FAILED):
                self._enqueue_webhooks(conn, [claim.job.id])
            if held:
                self._notify(conn, [claim.job.id])
            return held == 1

    def _lease_now(self) -> float | ColumnElement[float]:
        """The "now" of leases: the database server's clock on PostgreSQL, where workers on
        several hosts (each with its own clock) renew and reap the same leases; the local
        clock on SQLite, whose processes all run on one host."""
        return _POSTGRES_NOW if self._postgres else time.time()

    def _notify(self, conn: Any, job_ids: list[str]) -> None:
        """Wake the waiters of these jobs once this transaction commits, after its writes to
        them (the watchers read their new state). PostgreSQL: a notification per job.
        SQLite: the jobs' change_seq set to the next value, which the write lock makes
        greater than any committed before."""
        if not job_ids:
            return
        conn.execute(_PG_NOTIFY if self._postgres else _STAMP_CHANGE, {"job_ids": job_ids})

    def _enqueue_webhooks(self, conn: Any, job_ids: list[str]) -> None:
        """Queue the webhook of each of these just-finished jobs that asked for one, in the
        transaction that finished them: the job cannot end without its delivery on record."""
        now = time.time()
        due = select(
            jobs.c.id,
            jobs.c.key_id,
            jobs.c.webhook_url,
            literal("pending"),
            literal(0),
            literal(now),
            literal(now),
            literal(now + self.webhook_retry_seconds),
        ).where(
            jobs.c.id.in_(job_ids),
            jobs.c.webhook_url.is_not(None),
            ~exists().where(webhook_deliveries.c.job_id == jobs.c.id),
        )
        conn.execute(
            webhook_deliveries.insert().from_select(
                [
                    "job_id",
                    "key_id",
                    "url",
                    "state",
                    "attempts",
                    "next_attempt_at",
                    "created_at",
                    "give_up_at",
                ],
                due,
            )
        )

    def is_held(self, claim: Claim) -> bool:
        with self._reader.connect() as conn:
            return conn.execute(select(jobs.c.seq).where(self._holder(claim))).first() is not None

    def report_progress(self, claim: Claim, *, step: int, total: int) -> bool:
        return self._update_held(claim, progress_step=step, progress_total=total)

    @staticmethod
    def _log(conn: Any, job_id: str, level: str, message: str) -> None:
        conn.execute(
            job_logs.insert().values(job_id=job_id, at=time.time(), level=level, message=message)
        )

    def add_log(self, job_id: str, *, level: str, message: str) -> None:
        with self._writer.begin() as conn:
            self._log(conn, job_id, level, message)

    def logs(self, job_id: str) -> list[LogLine]:
        with self._reader.connect() as conn:
            rows = conn.execute(
                select(job_logs.c.at, job_logs.c.level, job_logs.c.message)
                .where(job_logs.c.job_id == job_id)
                .order_by(job_logs.c.seq)
            ).all()
        return [LogLine(at=r.at, level=r.level, message=r.message) for r in rows]

    def heartbeat(self, worker_id: str, *, info: dict[str, Any]) -> None:
        now = time.time()
        encoded = json.dumps(info, separators=(",", ":"))
        with self._writer.begin() as conn:
            updated = conn.execute(
                update(workers).where(workers.c.id == worker_id).values(last_seen=now, info=encoded)
            ).rowcount
            if not updated:
                conn.execute(
                    workers.insert().values(
                        id=worker_id, started_at=now, last_seen=now, info=encoded
                    )
                )

    def remove_worker(self, worker_id: str) -> None:
        with self._writer.begin() as conn:
            conn.execute(delete(workers).where(workers.c.id == worker_id))

    def workers(self, *, seen_within: float) -> list[WorkerRecord]:
        with self._reader.connect() as conn:
            rows = conn.execute(
                select(workers)
                .where(workers.c.last_seen >= time.time() - seen_within)
                .order_by(workers.c.started_at)
            ).all()
        return [WorkerRecord(r.id, r.started_at, r.last_seen, json.loads(r.info)) for r in rows]

    def renew(self, claim: Claim, *, lease_seconds: float) -> bool:
        return self._update_held(claim, lease_expires_at=self._lease_now() + lease_seconds)

    def complete(self, claim: Claim, *, result: dict[str, Any]) -> bool:
        return self._update_held(
            claim,
            state=JobState.SUCCEEDED,
            result=json.dumps(result, separators=(",", ":")),
            finished_at=time.time(),
            lease_token=None,
            lease_expires_at=None,
        )

    def fail(self, claim: Claim, *, code: str, message: str) -> bool:
        return self._update_held(
            claim,
            state=JobState.FAILED,
            error_code=code,
            error_message=message,
            finished_at=time.time(),
            lease_token=None,
            lease_expires_at=None,
        )

    def release(self, claim: Claim) -> bool:
        return self._update_held(
            claim,
            state=JobState.QUEUED,
            attempts=jobs.c.attempts - 1,
            lease_token=None,
            lease_expires_at=None,
            worker_id=None,
            started_at=None,
            progress_step=None,
            progress_total=None,
        )

    def reap_expired(self) -> Reaped:
        now = time.time()
        expired = and_(
            jobs.c.state == JobState.RUNNING, jobs.c.lease_expires_at < self._lease_now()
        )
        with self._writer.begin() as conn:
            # Locked on PostgreSQL (SQLite holds the write lock): two reapers at once never
            # both log, requeue or fail one job; the second skips the rows the first holds.
            lost = conn.execute(
                select(jobs.c.id, jobs.c.attempts).where(expired).with_for_update(skip_locked=True)
            ).all()
            if not lost:
                return Reaped()
            lost_ids = [job_id for job_id, _ in lost]
            given_up = [job_id for job_id, attempts in lost if attempts >= self.max_attempts]
            requeued = [job_id for job_id, attempts in lost if attempts < self.max_attempts]
            for job_id, attempts in lost:
                outcome = "failed" if attempts >= self.max_attempts else "back in the queue"
                self._log(conn, job_id, "warning", f"its worker stopped responding; {outcome}")
            conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(lost_ids), jobs.c.attempts >= self.max_attempts)
                .values(
                    state=JobState.FAILED,
                    error_code=WORKER_LOST,
                    error_message=(
                        f"the worker running this job stopped responding {self.max_attempts} "
                        "times; the job was given up. Submit it again, and tell the operator "
                        "if it keeps happening."
                    ),
                    finished_at=now,
                    lease_token=None,
                    lease_expires_at=None,
                )
            )
            if given_up:
                self._enqueue_webhooks(conn, given_up)
            conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(lost_ids), jobs.c.state == JobState.RUNNING)
                .values(
                    state=JobState.QUEUED,
                    lease_token=None,
                    lease_expires_at=None,
                    worker_id=None,
                    started_at=None,
                    progress_step=None,
                    progress_total=None,
                )
            )
            self._notify(conn, lost_ids)
        return Reaped(requeued=tuple(requeued), failed=tuple(given_up))

    # --- webhook deliveries -------------------------------------------------------------

    def claim_deliveries(self, *, limit: int, lease_seconds: float) -> list[Delivery]:
        """Take up to `limit` due deliveries for one attempt each. The lease keeps two
        dispatchers (API processes) from sending one at once; a dispatcher that dies
        mid-attempt leaves it to be taken again when the lease ends (at least once)."""
        with self._writer.begin() as conn:
            now = self._lease_time(conn)
            free = or_(
                webhook_deliveries.c.lease_expires_at.is_(None),
                webhook_deliveries.c.lease_expires_at < now,
            )
            # Locked and skipped like claims: two dispatchers at once take different rows.
            rows = conn.execute(
                select(webhook_deliveries)
                .where(
                    webhook_deliveries.c.state == "pending",
                    webhook_deliveries.c.next_attempt_at <= now,
                    free,
                )
                .order_by(webhook_deliveries.c.next_attempt_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            lease = now + lease_seconds
            if rows:
                conn.execute(
                    update(webhook_deliveries)
                    .where(webhook_deliveries.c.job_id.in_([r.job_id for r in rows]))
                    .values(lease_expires_at=lease)
                )
        return [Delivery(r.job_id, r.key_id, r.url, r.attempts, r.give_up_at, lease) for r in rows]

    def record_delivery_attempt(
        self,
        delivery: Delivery,
        attempt: DeliveryAttempt,
        *,
        delivered: bool,
        retry_at: float | None,
    ) -> None:
        """Record one attempt; then the delivery is done, retried at `retry_at`, or (with no
        retry_at, or one past its give-up time) failed for good. An attempt that outlived its
        lease is listed but decides nothing: the delivery belongs to whoever leased it since."""
        if delivered:
            outcome: dict[str, Any] = {"state": "delivered", "finished_at": attempt.at}
        elif retry_at is None or retry_at > delivery.give_up_at:
            outcome = {"state": "failed", "finished_at": attempt.at}
        else:
            outcome = {"state": "pending", "next_attempt_at": retry_at}
        with self._writer.begin() as conn:
            conn.execute(
                webhook_attempts.insert().values(
                    job_id=delivery.job_id,
                    at=attempt.at,
                    status_code=attempt.status_code,
                    error=attempt.error,
                    duration_ms=attempt.duration_ms,
                )
            )
            conn.execute(
                update(webhook_deliveries)
                .where(
                    webhook_deliveries.c.job_id == delivery.job_id,
                    webhook_deliveries.c.state == "pending",
                    webhook_deliveries.c.lease_expires_at == delivery.lease_expires_at,
                )
                .values(
                    attempts=webhook_deliveries.c.attempts + 1, lease_expires_at=None, **outcome
                )
            )

    def delivery(self, job_id: str) -> DeliveryRecord | None:
        with self._reader.connect() as conn:
            row = conn.execute(
                select(webhook_deliveries).where(webhook_deliveries.c.job_id == job_id)
            ).one_or_none()
            if row is None:
                return None
            attempts = conn.execute(
                select(webhook_attempts)
                .where(webhook_attempts.c.job_id == job_id)
                .order_by(webhook_attempts.c.seq)
            ).all()
        return DeliveryRecord(
            url=row.url,
            state=row.state,
            next_attempt_at=row.next_attempt_at if row.state == "pending" else None,
            finished_at=row.finished_at,
            attempts=[
                DeliveryAttempt(a.at, a.status_code, a.error, a.duration_ms) for a in attempts
            ],
        )

    def next_delivery_at(self) -> float | None:
        """When the earliest pending delivery is due (a dispatcher sleeps until then)."""
        # A leased delivery (being sent now) is due again only when its lease runs out.
        due_at = case(
            (
                webhook_deliveries.c.lease_expires_at > webhook_deliveries.c.next_attempt_at,
                webhook_deliveries.c.lease_expires_at,
            ),
            else_=webhook_deliveries.c.next_attempt_at,
        )
        with self._reader.connect() as conn:
            return conn.execute(
                select(func.min(due_at)).where(webhook_deliveries.c.state == "pending")
            ).scalar_one_or_none()

    def _lease_time(self, conn: Any) -> float:
        """_lease_now() as a number, for a lease handed back to the caller."""
        if self._postgres:
            return float(conn.execute(select(_POSTGRES_NOW)).scalar_one())
        return time.time()

    def change_token(self) -> int:
        return self._changes.token()

    def wait_for_change(self, timeout: float, *, since: int | None = None) -> bool:
        return self._changes.wait(timeout, since)

    def watch_jobs(self, callback: Callable[[JobChanges], None]) -> Callable[[], None]:
        return self._changes.subscribe(callback)

    def close(self) -> None:
        self._changes.close()
        self.engine.dispose()
