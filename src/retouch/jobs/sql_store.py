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
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    Executable,
    Float,
    FromClause,
    Insert,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
    update,
)

from retouch.contract import idempotency
from retouch.contract.states import JobState
from retouch.jobs.changes import CHANNEL, payload, watch_changes
from retouch.jobs.database import POSTGRES_NOW, dialect_insert, migrate, open_sqlite, writer
from retouch.jobs.lean_reads import lean_query
from retouch.jobs.models import (
    Claim,
    Delivery,
    DeliveryAttempt,
    DeliveryRecord,
    EndpointLoad,
    FailureGroup,
    Idempotency,
    IdempotencyConflict,
    Job,
    KeyQueueFull,
    LogLine,
    QueueFull,
    QueueSnapshot,
    RequestPage,
    WorkerRecord,
)
from retouch.jobs.schema import (
    QUEUE_BUCKET_SIZES,
    api_keys,
    idempotency_keys,
    job_logs,
    jobs,
    queue_buckets,
    webhook_attempts,
    webhook_deliveries,
    workers,
)
from retouch.jobs.store import WORKER_LOST, JobChanges, Reaped

# The code a failed job without one (none should exist) is counted under.
UNKNOWN_ERROR_CODE = "unknown"

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
_FINE_BUCKET = jobs.c.queue_round // _constant(_FINE)
_COARSE_BUCKET = jobs.c.queue_round // _constant(_COARSE)
# The queue's order: fair across keys (see SqlJobStore.submit), then by age.
_QUEUE_ORDER = (jobs.c.queue_round, jobs.c.seq)
# The jobs queued ahead in the coarse buckets below this job's, in the fine buckets below its
# own within its coarse one, and in the rounds of its fine bucket up to its own place: a few
# rows and the index entries of fewer than 64 rounds (one per key with jobs there), however
# long the queue ahead (see schema.queue_buckets). In the same statement as the job itself,
# so one snapshot: exact. Only for a queued job (CASE evaluates nothing otherwise).
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
            _AHEAD.c.queue_round >= _FINE_BUCKET * _constant(_FINE),
            tuple_(_AHEAD.c.queue_round, _AHEAD.c.seq) < tuple_(*_QUEUE_ORDER),
        )
        .scalar_subquery(),
    ),
    else_=None,
).label("queue_position")


def _greater(first: ColumnElement[int], second: ColumnElement[int]) -> ColumnElement[int]:
    """The greater of two integers, in SQL both dialects run (SQLite's max(a, b) is
    PostgreSQL's greatest(a, b))."""
    return case((first > second, first), else_=second)


# Bound: `of_key` (not `key_id`: an insert binds its column by that name).
_KEY_QUEUED = and_(jobs.c.key_id == bindparam("of_key"), jobs.c.state == JobState.QUEUED)
# A new job's round: one past its key's newest queued job's, so each key has one job per
# round (round robin); and never before the head of the queue (the running jobs' rounds when
# none waits), so a key that comes back after a pause joins at the head instead of jumping
# ahead of the jobs it would have followed, and a key's long backlog pushes back only its
# own later jobs. The newest of a key and the head are each the first entry of an index.
_KEY_NEXT_ROUND = (
    select(jobs.c.queue_round + 1)
    .where(_KEY_QUEUED)
    .order_by(jobs.c.queue_round.desc())
    .limit(1)
    .scalar_subquery()
)
_HEAD_ROUND = (
    select(jobs.c.queue_round)
    .where(jobs.c.state == JobState.QUEUED)
    .order_by(*_QUEUE_ORDER)
    .limit(1)
    .scalar_subquery()
)
_LAST_RUNNING_ROUND = (
    select(jobs.c.queue_round)
    .where(jobs.c.state == JobState.RUNNING)
    .order_by(jobs.c.queue_round.desc())
    .limit(1)
    .scalar_subquery()
)
_NEW_ROUND = _greater(
    func.coalesce(_KEY_NEXT_ROUND, 0), func.coalesce(_HEAD_ROUND, _LAST_RUNNING_ROUND, 0)
)
# How many jobs of a queued job's key may run at once: its own limit, else the bound
# `default_max_running` (NULL: no limit). Its running jobs are counted only when there is one.
_KEY_OF_JOB = api_keys.alias("key_of_job")
_RUNNING_OF_KEY = jobs.alias("running_of_key")
_MAX_RUNNING = func.coalesce(
    select(_KEY_OF_JOB.c.max_running).where(_KEY_OF_JOB.c.id == jobs.c.key_id).scalar_subquery(),
    bindparam("default_max_running", type_=Integer()),
)
_RUNNING_COUNT = (
    select(func.count())
    .select_from(_RUNNING_OF_KEY)
    .where(
        _RUNNING_OF_KEY.c.key_id == jobs.c.key_id,
        _RUNNING_OF_KEY.c.state == JobState.RUNNING,
    )
    .scalar_subquery()
)
# Whether a queued job's key runs fewer jobs than it may (CASE: evaluated in order), as the
# statement's snapshot sees it. On PostgreSQL two claims at the same instant see the same
# count: there a deployment with limits claims in two steps (SqlJobStore._take_limited).
_MAY_RUN_MORE = case((_MAX_RUNNING.is_(None), True), else_=_RUNNING_COUNT < _MAX_RUNNING)
# PostgreSQL: claims of one limited key's jobs take turns on this lock of the key, held to
# the claim's commit. Two-key advisory locks, in a space of their own (the other advisory
# locks take one 64-bit key).
_KEY_CLAIM_LOCKS = 0x72746B  # "rtk"
_LOCK_KEY_CLAIMS = select(
    func.pg_advisory_xact_lock(_KEY_CLAIM_LOCKS, func.hashtext(bindparam("lock_key")))
)
_RUNNING_OF = (
    select(func.count())
    .select_from(jobs)
    .where(jobs.c.key_id == bindparam("lock_key"), jobs.c.state == JobState.RUNNING)
)
_ANY_KEY_LIMIT = select(api_keys.c.id).where(api_keys.c.max_running.is_not(None)).limit(1)
# How long a claimer trusts its last look at whether any key has a running limit.
LIMITS_CHECK_SECONDS = 1.0


# The key's queued jobs, for its own cap: at most that many index entries.
_KEY_QUEUED_COUNT = select(func.count()).select_from(jobs).where(_KEY_QUEUED)
# Every queued job, for the queue cap: one row per coarse bucket.
_QUEUED_COUNT = _queued_in_buckets(1)
# PostgreSQL: held by a submit from its count of the queue to its commit. Any fixed 64-bit
# number other than database.MIGRATION_LOCK_ID would do.
_QUEUE_CAP_LOCK_ID = 0x7265746F75636871  # "retouchq"
_LOCK_QUEUE_CAP = select(func.pg_advisory_xact_lock(_QUEUE_CAP_LOCK_ID))

_WITHOUT_INPUT = [c for c in jobs.c if c.name != "input"]
# Built once: a status poll (or a submit, under SQLite's write lock) then skips statement
# construction, its largest cost.
_INSERT_JOB = jobs.insert().values(queue_round=_NEW_ROUND)
_JOB_BY_ID = select(jobs).where(jobs.c.id == bindparam("job_id"))
_INPUT_OF = select(jobs.c.input).where(
    jobs.c.id == bindparam("job_id"), jobs.c.key_id == bindparam("key_id")
)
_GET_JOB = select(*_WITHOUT_INPUT, _QUEUE_POSITION).where(
    jobs.c.id == bindparam("job_id"), jobs.c.key_id == bindparam("key_id")
)


def _notification(rows: FromClause) -> ColumnElement[Any]:
    """PostgreSQL: a notification naming each of these rows' jobs (see retouch.jobs.changes),
    sent when the transaction commits."""
    return func.pg_notify(CHANNEL, payload(rows)).label("notified")


# How a write tells the watchers which jobs it changed (see retouch.jobs.changes), built once.
_NOTIFIED = jobs.c.id.in_(bindparam("job_ids", expanding=True))
_PG_NOTIFY = select(_notification(jobs)).where(_NOTIFIED)
_LATEST_CHANGE = jobs.alias("latest")
# SQLite: the change counter's next value; the write lock makes it greater than any
# committed before. A write of one job sets it in its own UPDATE, the others by _STAMP_CHANGE.
_NEXT_CHANGE_SEQ = select(
    func.coalesce(func.max(_LATEST_CHANGE.c.change_seq), 0) + 1
).scalar_subquery()
_STAMP_CHANGE = update(jobs).where(_NOTIFIED).values(change_seq=_NEXT_CHANGE_SEQ)

_INSERT_LOG = job_logs.insert()
# The job that a claim holds, while it holds it: every write of a lease holder (renew,
# progress, complete, fail, release) matches no row once the lease was lost (the fencing).
_HELD = and_(
    jobs.c.id == bindparam("held_id"),
    jobs.c.state == JobState.RUNNING,
    jobs.c.lease_token == bindparam("held_token"),
)
_IS_HELD = select(jobs.c.seq).where(_HELD)
# SQLite before 3.35 has no RETURNING: a claim then finds the row it took by its new token
# (among the running jobs only, by the state index).
_CLAIMED_BY_TOKEN = select(jobs).where(
    jobs.c.state == JobState.RUNNING, jobs.c.lease_token == bindparam("token")
)


def _started_log(claimed: FromClause, *where: ColumnElement[bool]) -> Insert:
    """The log line of each claimed row (with jobs' id and attempts): who started it, in
    which attempt. Bound: `worker`, `claimed_at`."""
    message = (
        literal("started by ")
        + bindparam("worker", type_=String())
        + literal(" (attempt ")
        + cast(claimed.c.attempts, String())
        + literal(")")
    )
    line = select(claimed.c.id, bindparam("claimed_at", type_=Float()), literal("info"), message)
    return job_logs.insert().from_select(["job_id", "at", "level", "message"], line.where(*where))


_SQLITE_STARTED_LOG = _started_log(jobs, jobs.c.seq == bindparam("claimed_seq"))


def give_up_deliveries(conn: Any, which: ColumnElement[bool], now: float) -> None:
    """The pending webhook deliveries `which` selects end as failed: no attempt is made."""
    conn.execute(
        update(webhook_deliveries)
        .where(which, webhook_deliveries.c.state == "pending")
        .values(state="failed", finished_at=now, lease_expires_at=None)
    )


def _owned(job_id: str, key_id: str) -> ColumnElement[bool]:
    return and_(jobs.c.id == job_id, jobs.c.key_id == key_id)


# What a cancel sets (with finished_at).
_CANCELLED: dict[str, Any] = {
    "state": JobState.CANCELLED,
    "lease_token": None,
    "lease_expires_at": None,
}

# The columns a submit sets, bound by name.
_SUBMITTED = [
    "id",
    "key_id",
    "endpoint",
    "input",
    "state",
    "attempts",
    "created_at",
    "webhook_url",
    "base_url",
    "surface",
]
# PostgreSQL, once the cap's lock is held: the count, the insert, its notification and the
# new row in one statement, as few round trips as possible while submits take turns. No
# row when the queue is full (the count is of the statement's snapshot, before the insert).
_PG_SUBMIT = (
    jobs.insert()
    .from_select(
        [*_SUBMITTED, "queue_round"],
        select(
            *(bindparam(name, type_=jobs.c[name].type) for name in _SUBMITTED), _NEW_ROUND
        ).where(
            _QUEUED_COUNT.scalar_subquery() < bindparam("max_queued"),
            _KEY_QUEUED_COUNT.scalar_subquery() < bindparam("key_max_queued"),
        ),
    )
    .returning(*jobs.c, _notification(jobs))
)


def _deliveries_for(ended: FromClause, *where: ColumnElement[bool]) -> Insert:
    """The webhook delivery of each ended row (with jobs' id, key_id and webhook_url) that
    asked for one and has none yet, due at once. Bound: `hook_at`, `hook_give_up_at`."""
    now = bindparam("hook_at", type_=Float())
    due = select(
        ended.c.id,
        ended.c.key_id,
        ended.c.webhook_url,
        literal("pending"),
        literal(0),
        now,
        now,
        bindparam("hook_give_up_at", type_=Float()),
    ).where(
        *where,
        ended.c.webhook_url.is_not(None),
        ~exists().where(webhook_deliveries.c.job_id == ended.c.id),
        # A revoked key's results go nowhere (its URLs answer 403 anyway).
        ~exists().where(api_keys.c.id == ended.c.key_id, api_keys.c.revoked_at.is_not(None)),
    )
    return webhook_deliveries.insert().from_select(
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


_ENQUEUE_WEBHOOKS = _deliveries_for(jobs, _NOTIFIED)

# A claim reaps expired leases at most this often while it finds jobs to take, and whenever
# it finds none: a busy claimer does not pay a reap per job, and an idle one (it claims at
# least once a second) still reaps a dead worker's job within about a second.
REAP_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True)
class _HeldWrite:
    """One kind of lease holder's write, built once per store."""

    statement: Executable
    ends: bool
    """It ends the job (complete, fail): its webhook delivery is written with it."""


class SqlJobStore:
    def __init__(
        self,
        engine: Engine,
        *,
        max_attempts: int = 3,
        webhook_retry_seconds: float = 86400.0,
        default_max_running: int | None = None,
    ) -> None:
        self.engine = engine
        # How many jobs of one key run at once where the key sets no limit (None: any number).
        self.default_max_running = default_max_running
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
        # A write of one statement (a claim, a lease holder's write, on PostgreSQL) runs in
        # autocommit there, as its own transaction: one round trip instead of three. SQLite's
        # writes need the writer's transaction (its write lock).
        self._one_statement = self._reader if self._postgres else self._writer
        # SQLite before 3.35 has no UPDATE … RETURNING (SQLAlchemy knows the version).
        self._returning = bool(engine.dialect.update_returning)
        # The "now" of leases (see _lease_now), in the statements built once: bound on SQLite.
        self._clock: ColumnElement[float] = (
            POSTGRES_NOW if self._postgres else bindparam("clock", type_=Float())
        )
        self._claim_any = self._claim_statement(
            self._queued_candidates(by_endpoint=False).scalar_subquery()
        )
        self._claim_by_endpoint = self._claim_statement(
            self._queued_candidates(by_endpoint=True).scalar_subquery()
        )
        # PostgreSQL with running limits (see _take_limited).
        self._claim_at = self._claim_statement(bindparam("at_seq", type_=Integer()))
        self._limited_candidates = {
            by_endpoint: self._queued_candidates(by_endpoint=by_endpoint)
            .with_only_columns(jobs.c.seq, jobs.c.key_id, _MAX_RUNNING.label("max_running"))
            .where(jobs.c.key_id.not_in(bindparam("passed", expanding=True)))
            for by_endpoint in (False, True)
        }
        self._any_key_limit = False
        self._limits_checked_until = 0.0
        self._any_expired = (
            select(jobs.c.seq)
            .where(jobs.c.state == JobState.RUNNING, jobs.c.lease_expires_at < self._clock)
            .limit(1)
        )
        leaving: dict[str, Any] = {"lease_token": None, "lease_expires_at": None}
        ended = {"finished_at": bindparam("ended_at", type_=Float()), **leaving}
        self._renew = self._held_write(
            lease_expires_at=self._clock + bindparam("lease_seconds", type_=Float())
        )
        self._progress = self._held_write(
            progress_step=bindparam("step"), progress_total=bindparam("total")
        )
        self._complete = self._held_write(
            ends=True,
            state=JobState.SUCCEEDED,
            result=bindparam("result_json"),
            stored_bytes=bindparam("stored_bytes", type_=Integer()),
            **ended,
        )
        self._fail = self._held_write(
            ends=True,
            state=JobState.FAILED,
            error_code=bindparam("failure_code"),
            error_message=bindparam("failure_message"),
            **ended,
        )
        self._release = self._held_write(
            state=JobState.QUEUED,
            attempts=jobs.c.attempts - 1,
            worker_id=None,
            started_at=None,
            progress_step=None,
            progress_total=None,
            **leaving,
        )
        self._reap_lock = threading.Lock()
        self._next_reap = 0.0  # time.monotonic() of the next reap a claim makes
        self._changes = watch_changes(engine)
        # A status poll's read skips SQLAlchemy's per-call costs (retouch.jobs.lean_reads).
        self._lean_get = lean_query(engine, self._reader, _GET_JOB, "job_id", "key_id")

    @classmethod
    def open_sqlite(
        cls,
        path: Path,
        *,
        max_attempts: int = 3,
        webhook_retry_seconds: float = 86400.0,
        default_max_running: int | None = None,
    ) -> SqlJobStore:
        engine = open_sqlite(path)
        migrate(engine)
        return cls(
            engine,
            max_attempts=max_attempts,
            webhook_retry_seconds=webhook_retry_seconds,
            default_max_running=default_max_running,
        )

    # --- API side -------------------------------------------------------------------

    def submit(
        self,
        *,
        key_id: str,
        endpoint: str,
        input: dict[str, Any],
        max_queued: int,
        key_max_queued: int | None = None,
        webhook_url: str | None = None,
        base_url: str | None = None,
        idempotency: Idempotency | None = None,
        admit: Callable[[Any], None] | None = None,
        surface: str | None = None,
    ) -> Job:
        """The new job's queue_round makes the queue fair across keys: see _NEW_ROUND.
        `admit` is called with the transaction's connection once the submit is known not to
        be a replay, before the caps are counted; it may raise to refuse the submit, and
        whatever it wrote is rolled back with a refused one (the key's rate counter)."""
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
            "surface": surface,
        }
        # No cap of the key's own: one no count can reach (PostgreSQL's single statement).
        key_cap = max_queued if key_max_queued is None else key_max_queued
        with self._writer.begin() as conn:
            if idempotency is not None:
                original = self._idempotent_original(conn, key_id, idempotency, job_id, now)
                if original is not None:
                    return original
            if admit is not None:
                admit(conn)
            if self._postgres:
                # Submits take turns from here to their commit, so each counts every job
                # queued before it and the cap holds exactly (SQLite's write lock does the
                # same). They queued on the newest bucket's row anyway, which every insert
                # updates; taking turns here instead measured no slower.
                conn.execute(_LOCK_QUEUE_CAP)
                caps = {"max_queued": max_queued, "key_max_queued": key_cap}
                row = conn.execute(_PG_SUBMIT, {**new_job, **caps, "of_key": key_id}).first()
                if row is not None:
                    return Job.from_row(row)
            queued = conn.execute(_QUEUED_COUNT).scalar_one()
            if queued >= max_queued:
                raise QueueFull(f"{queued} jobs are already queued")
            if key_max_queued is not None:
                of_key = conn.execute(_KEY_QUEUED_COUNT, {"of_key": key_id}).scalar_one()
                if of_key >= key_max_queued:
                    raise KeyQueueFull(key_max_queued)
            conn.execute(_INSERT_JOB, {**new_job, "of_key": key_id})
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
        insert = dialect_insert(self.engine.dialect.name)
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
        if self._lean_get is not None:
            found = self._lean_get.rows(job_id, key_id)
            return Job.from_row(self._lean_get.row(found[0])) if found else None
        with self._reader.connect() as conn:
            row = conn.execute(_GET_JOB, {"job_id": job_id, "key_id": key_id}).one_or_none()
        return Job.from_row(row) if row else None

    def input_of(self, job_id: str, *, key_id: str) -> dict[str, Any] | None:
        with self._reader.connect() as conn:
            stored = conn.execute(_INPUT_OF, {"job_id": job_id, "key_id": key_id}).scalar()
        return json.loads(stored) if stored is not None else None

    def list_jobs(
        self,
        *,
        key_id: str | None,
        limit: int,
        before: int | None = None,
        state: JobState | None = None,
    ) -> RequestPage:
        query = select(*_WITHOUT_INPUT)
        if key_id is not None:
            query = query.where(jobs.c.key_id == key_id)
        if state is not None:
            query = query.where(jobs.c.state == state)
        if before is not None:
            query = query.where(jobs.c.seq < before)
        with self._reader.connect() as conn:
            rows = conn.execute(query.order_by(jobs.c.seq.desc()).limit(limit + 1)).all()
        page = [Job.from_row(row) for row in rows[:limit]]
        more = len(rows) > limit
        return RequestPage(jobs=page, next_cursor=page[-1].seq if more else None)

    def jobs_per_key(self) -> dict[str, dict[JobState, int]]:
        """How many jobs each key has in each state (by the key's index, not the rows)."""
        counts: dict[str, dict[JobState, int]] = {}
        with self._reader.connect() as conn:
            rows = conn.execute(
                select(jobs.c.key_id, jobs.c.state, func.count()).group_by(
                    jobs.c.key_id, jobs.c.state
                )
            ).all()
        for key_id, state, count in rows:
            counts.setdefault(key_id, {})[JobState(state)] = count
        return counts

    def queue_overview(self, *, failures_within: float) -> QueueSnapshot:
        # Job times are written on the local clock (submit, complete, fail, the reaper), so
        # the window is measured on it too, as `workers` measures heartbeats.
        now = time.time()
        queued = jobs.c.state == JobState.QUEUED
        # Unfinished rows only (ix_jobs_state_round), counted per endpoint with the lowest
        # seq still queued: the oldest submit, whose row the join reads by primary key.
        per_endpoint = (
            select(
                jobs.c.endpoint,
                func.count(case((queued, 1))).label("queued"),
                func.count(case((jobs.c.state == JobState.RUNNING, 1))).label("running"),
                func.min(case((queued, jobs.c.seq))).label("oldest_seq"),
            )
            .where(jobs.c.state.in_([JobState.QUEUED, JobState.RUNNING]))
            .group_by(jobs.c.endpoint)
            .subquery()
        )
        oldest = jobs.alias("oldest")
        loads = select(
            per_endpoint.c.endpoint,
            per_endpoint.c.queued,
            per_endpoint.c.running,
            oldest.c.id,
            oldest.c.created_at,
        ).select_from(per_endpoint.outerjoin(oldest, oldest.c.seq == per_endpoint.c.oldest_seq))
        code = func.coalesce(jobs.c.error_code, UNKNOWN_ERROR_CODE)
        # Failed rows finished in the window, each code's count and its newest failure in one
        # pass (window functions: SQLite >= 3.25 and PostgreSQL). Through ix_jobs_finished_at:
        # the window bounds the rows read, where every failure ever (rows stay after
        # retention) is behind state = 'failed' of ix_jobs_state_round, which SQLite, with
        # no statistics, would pick; `state || ''` is no index's column, on either database.
        failed = jobs.c.state.concat("") == JobState.FAILED.value
        ranked = (
            select(
                code.label("code"),
                jobs.c.id,
                jobs.c.error_message,
                jobs.c.finished_at,
                func.count().over(partition_by=code).label("failures"),
                func.row_number()
                .over(partition_by=code, order_by=(jobs.c.finished_at.desc(), jobs.c.seq.desc()))
                .label("rank"),
            )
            .where(failed, jobs.c.finished_at >= now - failures_within)
            .subquery()
        )
        newest = (
            select(ranked)
            .where(ranked.c.rank == 1)
            .order_by(ranked.c.failures.desc(), ranked.c.code)
        )
        with self._reader.connect() as conn:
            load_rows = conn.execute(loads.order_by(per_endpoint.c.endpoint)).all()
            failure_rows = conn.execute(newest).all()
        return QueueSnapshot(
            at=now,
            endpoints=tuple(
                EndpointLoad(
                    endpoint=row.endpoint,
                    queued=row.queued,
                    running=row.running,
                    oldest_queued_id=row.id,
                    oldest_queued_at=row.created_at,
                )
                for row in load_rows
            ),
            failures=tuple(
                FailureGroup(
                    code=row.code,
                    count=row.failures,
                    last_at=row.finished_at,
                    last_id=row.id,
                    last_message=row.error_message,
                )
                for row in failure_rows
            ),
        )

    def cancel(
        self, job_id: str, *, key_id: str, running_too: bool = False, any_key: bool = False
    ) -> tuple[Job, bool] | None:
        cancellable = [JobState.QUEUED, JobState.RUNNING] if running_too else [JobState.QUEUED]
        mine = jobs.c.id == job_id if any_key else _owned(job_id, key_id)
        with self._writer.begin() as conn:
            cancelled = conn.execute(
                update(jobs)
                .where(mine, jobs.c.state.in_(cancellable))
                .values(**_CANCELLED, finished_at=time.time())
            ).rowcount
            row = conn.execute(select(jobs).where(mine)).one_or_none()
            if cancelled and row is not None:
                who = "the client's" if row.key_id == key_id else "an admin's"
                self._log(conn, job_id, "info", f"cancelled at {who} request")
                self._enqueue_webhooks(conn, [job_id])
                self._notify(conn, [job_id])
        if row is None:
            return None
        return Job.from_row(row), cancelled == 1

    def end_work_of_revoked(self, conn: Any, key_ids: list[str], *, running_too: bool) -> list[str]:
        """In the transaction that revokes these keys (auth.keys.KeyStore.revoke): cancel
        their queued jobs (and with running_too, their running ones: the workers stop at the
        next step and can store nothing), each with a log line saying why, and give up their
        pending webhooks. No webhook is written for a revoked key's job from now on (see
        _deliveries_for). Returns the cancelled jobs that had started before (their earlier
        attempts may have stored files, no one's outcome now)."""
        if not key_ids:
            return []
        ending = [JobState.QUEUED, JobState.RUNNING] if running_too else [JobState.QUEUED]
        ended = and_(jobs.c.key_id.in_(key_ids), jobs.c.state.in_(ending))
        now = time.time()
        cancel = (
            update(jobs)
            .where(ended)
            .values(
                **_CANCELLED,
                finished_at=now,
                error_message="cancelled: the API key that submitted it was revoked",
            )
        )
        if self._returning:
            # The rows this statement changed, not a read before it that a claim may outrun.
            cancelled = conn.execute(cancel.returning(jobs.c.id, jobs.c.attempts)).all()
        else:  # SQLite before 3.35: the write lock keeps the read and the update together
            cancelled = conn.execute(select(jobs.c.id, jobs.c.attempts).where(ended)).all()
            conn.execute(cancel)
        job_ids = [job_id for job_id, _ in cancelled]
        for job_id in job_ids:
            self._log(conn, job_id, "warning", "cancelled: its API key was revoked")
        self._notify(conn, job_ids)
        give_up_deliveries(conn, webhook_deliveries.c.key_id.in_(key_ids), now)
        return [job_id for job_id, attempts in cancelled if attempts > 0]

    # --- worker side ----------------------------------------------------------------

    def claim(
        self,
        *,
        worker_id: str,
        lease_seconds: float,
        endpoints: Sequence[str] | None = None,
        reap: bool = True,
        given_up: Callable[[tuple[str, ...]], None] | None = None,
    ) -> Claim | None:
        reaped = reap and self._reap_due()
        if reaped:
            self._reap(given_up)
        claim = self._take_oldest(worker_id, lease_seconds, endpoints)
        # None: nothing was queued, but a dead worker's job may be waiting for its lease to
        # be reaped. Reaped now, so a claimer never idles while such a job waits.
        if claim is None and reap and not reaped and self._reap(given_up).requeued:
            claim = self._take_oldest(worker_id, lease_seconds, endpoints)
        return claim

    def _reap_due(self) -> bool:
        """Whether this claim reaps first: REAP_INTERVAL_SECONDS have passed since the last
        one that did (one claim of this store's threads takes each turn)."""
        with self._reap_lock:
            now = time.monotonic()
            if now < self._next_reap:
                return False
            self._next_reap = now + REAP_INTERVAL_SECONDS
            return True

    def _reap(self, given_up: Callable[[tuple[str, ...]], None] | None) -> Reaped:
        reaped = self.reap_expired()
        if reaped.failed and given_up is not None:
            given_up(reaped.failed)
        return reaped

    def _queued_candidates(self, *, by_endpoint: bool) -> Select[Any]:
        """The next queued job (of the bound `endpoints`) whose key may run one more, by the
        statement's snapshot, locked. SQLite: the write lock is held from BEGIN IMMEDIATE,
        so no other claimer sees this row as queued. PostgreSQL: the row is locked, and
        other claimers skip it and take the next one instead of waiting."""
        queued = select(jobs.c.seq).where(jobs.c.state == JobState.QUEUED, _MAY_RUN_MORE)
        if by_endpoint:
            queued = queued.where(jobs.c.endpoint.in_(bindparam("endpoints", expanding=True)))
        return queued.order_by(*_QUEUE_ORDER).limit(1).with_for_update(skip_locked=True, of=jobs)

    def _claim_statement(self, target: ColumnElement[int]) -> Executable:
        """The claim of the queued job at seq `target`, returning its row as it is now:
        running, under the bound `token`. PostgreSQL: with its log line and its
        notification, in one statement."""
        take = (
            update(jobs)
            .where(jobs.c.seq == target, jobs.c.state == JobState.QUEUED)
            .values(
                state=JobState.RUNNING,
                attempts=jobs.c.attempts + 1,
                lease_token=bindparam("token"),
                lease_expires_at=self._clock + bindparam("lease_seconds", type_=Float()),
                worker_id=bindparam("worker"),
                started_at=bindparam("claimed_at", type_=Float()),
                progress_step=None,
                progress_total=None,
            )
        )
        if not self._postgres:
            take = take.values(change_seq=_NEXT_CHANGE_SEQ)  # its notification (see _notify)
            return take.returning(*jobs.c) if self._returning else take
        claimed = take.returning(*jobs.c).cte("claimed")
        return select(claimed, _notification(claimed)).add_cte(_started_log(claimed).cte("log"))

    def _limits_apply(self) -> bool:
        """PostgreSQL: whether some key may have a running limit (the default, or a key's
        own), looked up at most once per LIMITS_CHECK_SECONDS."""
        if self.default_max_running is not None:
            return True
        now = time.monotonic()
        if now >= self._limits_checked_until:
            with self._reader.connect() as conn:
                self._any_key_limit = conn.execute(_ANY_KEY_LIMIT).first() is not None
            self._limits_checked_until = now + LIMITS_CHECK_SECONDS
        return self._any_key_limit

    def _take_limited(self, params: dict[str, Any], by_endpoint: bool) -> Any:
        """PostgreSQL with running limits: the claim in two steps, in one transaction. Take
        the next candidate's row lock; if its key has a limit, take the key's claim lock
        (waiting for another claim of that key to commit) and count its running jobs again
        in a snapshot after that commit; claim it if it may run one more, else pass the key
        by and look at the next candidate."""
        candidates = self._limited_candidates[by_endpoint]
        passed: list[str] = []
        with self._writer.begin() as conn:
            while True:
                found = conn.execute(candidates, {**params, "passed": passed}).first()
                if found is None:
                    return None
                if found.max_running is not None:
                    lock = {"lock_key": found.key_id}
                    conn.execute(_LOCK_KEY_CLAIMS, lock)
                    if conn.execute(_RUNNING_OF, lock).scalar_one() >= found.max_running:
                        passed.append(found.key_id)
                        continue
                return conn.execute(self._claim_at, {**params, "at_seq": found.seq}).one()

    def _take_oldest(
        self, worker_id: str, lease_seconds: float, endpoints: Sequence[str] | None
    ) -> Claim | None:
        token = str(uuid.uuid4())
        now = time.time()
        params = {
            "token": token,
            "worker": worker_id,
            "lease_seconds": lease_seconds,
            "clock": now,
            "claimed_at": now,
            "endpoints": None if endpoints is None else list(endpoints),
            "default_max_running": self.default_max_running,
        }
        statement = self._claim_any if endpoints is None else self._claim_by_endpoint
        if self._postgres and self._limits_apply():
            row = self._take_limited(params, by_endpoint=endpoints is not None)
        elif self._postgres:
            with self._one_statement.connect() as conn:
                row = conn.execute(statement, params).one_or_none()
        else:
            with self._writer.begin() as conn:
                if self._returning:
                    row = conn.execute(statement, params).one_or_none()
                else:
                    conn.execute(statement, params)
                    row = conn.execute(_CLAIMED_BY_TOKEN, params).one_or_none()
                if row is not None:
                    conn.execute(_SQLITE_STARTED_LOG, {**params, "claimed_seq": row.seq})
        return None if row is None else Claim(job=Job.from_row(row), lease_token=token)

    def _held_write(self, *, ends: bool = False, **values: Any) -> _HeldWrite:
        """A lease holder's write setting `values` (bound: `held_id`, `held_token`), with
        its notification and, when it ends the job, its webhook delivery. PostgreSQL: in one
        statement, returning a row when it matched."""
        changed = update(jobs).where(_HELD).values(**values)
        if not self._postgres:
            return _HeldWrite(changed.values(change_seq=_NEXT_CHANGE_SEQ), ends)
        rows = changed.returning(
            jobs.c.id, jobs.c.state, jobs.c.seq, jobs.c.key_id, jobs.c.webhook_url
        ).cte("changed")
        notify = select(_notification(rows))
        if ends:
            notify = notify.add_cte(_deliveries_for(rows).cte("delivery"))
        return _HeldWrite(notify, ends)

    def _update_held(self, claim: Claim, write: _HeldWrite, **params: Any) -> bool:
        params |= {"held_id": claim.job.id, "held_token": claim.lease_token, "clock": time.time()}
        if self._postgres:
            if write.ends:
                params |= self._delivery_times()
            with self._one_statement.connect() as conn:
                return len(conn.execute(write.statement, params).all()) == 1
        with self._writer.begin() as conn:
            held = conn.execute(write.statement, params).rowcount == 1
            # The claim holds the row as claimed, webhook_url included (no write changes it):
            # a job that asked for no webhook skips the statement.
            if held and write.ends and claim.job.webhook_url is not None:
                self._enqueue_webhooks(conn, [claim.job.id])
            return held

    def _lease_now(self) -> float | ColumnElement[float]:
        """The "now" of leases: the database server's clock on PostgreSQL, where workers on
        several hosts (each with its own clock) renew and reap the same leases; the local
        clock on SQLite, whose processes all run on one host."""
        return POSTGRES_NOW if self._postgres else time.time()

    def _notify(self, conn: Any, job_ids: list[str]) -> None:
        """Wake the waiters of these jobs once this transaction commits, after its writes to
        them (the watchers read their new state). PostgreSQL: a notification per job.
        SQLite: the jobs' change_seq set to the next value, which the write lock makes
        greater than any committed before."""
        if not job_ids:
            return
        conn.execute(_PG_NOTIFY if self._postgres else _STAMP_CHANGE, {"job_ids": job_ids})

    def _delivery_times(self) -> dict[str, float]:
        """The bound times of a webhook delivery written now (see _deliveries_for)."""
        now = time.time()
        return {"hook_at": now, "hook_give_up_at": now + self.webhook_retry_seconds}

    def _enqueue_webhooks(self, conn: Any, job_ids: list[str]) -> None:
        """Queue the webhook of each of these just-finished jobs that asked for one, in the
        transaction that finished them: the job cannot end without its delivery on record."""
        conn.execute(_ENQUEUE_WEBHOOKS, {"job_ids": job_ids, **self._delivery_times()})

    def is_held(self, claim: Claim) -> bool:
        with self._reader.connect() as conn:
            held = {"held_id": claim.job.id, "held_token": claim.lease_token}
            return conn.execute(_IS_HELD, held).first() is not None

    def report_progress(self, claim: Claim, *, step: int, total: int) -> bool:
        return self._update_held(claim, self._progress, step=step, total=total)

    @staticmethod
    def _log(conn: Any, job_id: str, level: str, message: str) -> None:
        line = {"job_id": job_id, "at": time.time(), "level": level, "message": message}
        conn.execute(_INSERT_LOG, line)

    def add_log(self, job_id: str, *, level: str, message: str) -> None:
        with self._writer.begin() as conn:
            self._log(conn, job_id, level, message)
            # A stream with ?logs=1 sends the line now, not with the job's next change.
            self._notify(conn, [job_id])

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
        return self._update_held(claim, self._renew, lease_seconds=lease_seconds)

    def complete(self, claim: Claim, *, result: dict[str, Any]) -> bool:
        result_json = json.dumps(result, separators=(",", ":"))
        stored = sum(int(output.get("bytes", 0)) for output in result.get("outputs", []))
        return self._update_held(
            claim,
            self._complete,
            result_json=result_json,
            stored_bytes=stored,
            ended_at=time.time(),
        )

    def fail(self, claim: Claim, *, code: str, message: str) -> bool:
        return self._update_held(
            claim,
            self._fail,
            failure_code=code,
            failure_message=message,
            ended_at=time.time(),
        )

    def release(self, claim: Claim) -> bool:
        return self._update_held(claim, self._release)

    def reap_expired(self) -> Reaped:
        now = time.time()
        # Nearly every reap finds nothing: a read says so without a write transaction (on
        # SQLite, without the write lock every writer of the process waits for).
        with self._reader.connect() as conn:
            if conn.execute(self._any_expired, {"clock": now}).first() is None:
                return Reaped()
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
            return float(conn.execute(select(POSTGRES_NOW)).scalar_one())
        return time.time()

    def change_token(self) -> int:
        return self._changes.token()

    def wait_for_change(self, timeout: float, *, since: int | None = None) -> bool:
        return self._changes.wait(timeout, since)

    def watch_jobs(self, callback: Callable[[JobChanges], None]) -> Callable[[], None]:
        return self._changes.subscribe(callback)

    def close(self) -> None:
        self._changes.close()
        if self._lean_get is not None:
            self._lean_get.close()
        self.engine.dispose()
