"""The job store on SQLAlchemy Core; the embedded backend is SQLite."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, bindparam, case, func, select, update

from retouch.contract.states import JobState
from retouch.jobs.database import migrate, open_sqlite, writer
from retouch.jobs.models import Claim, Job, QueueFull
from retouch.jobs.schema import jobs
from retouch.jobs.store import WORKER_LOST

# How often an idle worker looks at SQLite's change counter: a pick-up within a few ms
# costs one tiny pragma read per tick and no write lock.
CHANGE_POLL_SECONDS = 0.005


_AHEAD = jobs.alias("ahead")
# Computed in the same statement as the job itself, and only for a queued job (CASE does
# not evaluate the count otherwise): a status poll is one indexed read.
_QUEUE_POSITION = case(
    (
        jobs.c.state == JobState.QUEUED,
        select(func.count())
        .select_from(_AHEAD)
        .where(_AHEAD.c.state == JobState.QUEUED, _AHEAD.c.seq < jobs.c.seq)
        .scalar_subquery(),
    ),
    else_=None,
).label("queue_position")

# Built once: a status poll then skips statement construction, its largest cost.
_GET_JOB = select(jobs, _QUEUE_POSITION).where(
    jobs.c.id == bindparam("job_id"), jobs.c.key_id == bindparam("key_id")
)


class SqlJobStore:
    def __init__(self, engine: Engine, *, max_attempts: int = 3) -> None:
        self.engine = engine
        self._writer = writer(engine)
        self.max_attempts = max_attempts
        self._watch_lock = threading.Lock()
        self._watch_connection: sqlite3.Connection | None = None
        self._watch_path: str | None = engine.url.database

    @classmethod
    def open_sqlite(cls, path: Path, *, max_attempts: int = 3) -> SqlJobStore:
        engine = open_sqlite(path)
        migrate(engine)
        return cls(engine, max_attempts=max_attempts)

    # --- API side -------------------------------------------------------------------

    def submit(self, *, key_id: str, endpoint: str, input: dict[str, Any], max_queued: int) -> Job:
        job_id = str(uuid.uuid4())
        with self._writer.begin() as conn:
            queued = conn.execute(
                select(func.count()).select_from(jobs).where(jobs.c.state == JobState.QUEUED)
            ).scalar_one()
            if queued >= max_queued:
                raise QueueFull(f"{queued} jobs are already queued")
            conn.execute(
                jobs.insert().values(
                    id=job_id,
                    key_id=key_id,
                    endpoint=endpoint,
                    input=json.dumps(input, separators=(",", ":")),
                    state=JobState.QUEUED,
                    attempts=0,
                    created_at=time.time(),
                )
            )
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).one()
        return Job.from_row(row)

    def get(self, job_id: str, *, key_id: str) -> Job | None:
        with self.engine.connect() as conn:
            row = conn.execute(_GET_JOB, {"job_id": job_id, "key_id": key_id}).one_or_none()
        return Job.from_row(row) if row else None

    def count_queued(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(jobs).where(jobs.c.state == JobState.QUEUED)
                ).scalar_one()
            )

    def cancel(self, job_id: str, *, key_id: str) -> tuple[Job, bool] | None:
        with self._writer.begin() as conn:
            cancelled = conn.execute(
                update(jobs)
                .where(
                    jobs.c.id == job_id,
                    jobs.c.key_id == key_id,
                    jobs.c.state == JobState.QUEUED,
                )
                .values(state=JobState.CANCELLED, finished_at=time.time())
            ).rowcount
            row = conn.execute(
                select(jobs).where(jobs.c.id == job_id, jobs.c.key_id == key_id)
            ).one_or_none()
        if row is None:
            return None
        return Job.from_row(row), cancelled == 1

    # --- worker side ----------------------------------------------------------------

    def claim(self, *, worker_id: str, lease_seconds: float) -> Claim | None:
        self.reap_expired()
        token = str(uuid.uuid4())
        now = time.time()
        with self._writer.begin() as conn:
            # The write lock is held from BEGIN IMMEDIATE, so no other claimer sees this row
            # as queued between the select and the update.
            seq = conn.execute(
                select(jobs.c.seq)
                .where(jobs.c.state == JobState.QUEUED)
                .order_by(jobs.c.seq)
                .limit(1)
            ).scalar_one_or_none()
            if seq is None:
                return None
            conn.execute(
                update(jobs)
                .where(jobs.c.seq == seq)
                .values(
                    state=JobState.RUNNING,
                    attempts=jobs.c.attempts + 1,
                    lease_token=token,
                    lease_expires_at=now + lease_seconds,
                    worker_id=worker_id,
                    started_at=now,
                )
            )
            row = conn.execute(select(jobs).where(jobs.c.seq == seq)).one()
        return Claim(job=Job.from_row(row), lease_token=token)

    def _holder(self, claim: Claim) -> Any:
        return and_(
            jobs.c.id == claim.job.id,
            jobs.c.state == JobState.RUNNING,
            jobs.c.lease_token == claim.lease_token,
        )

    def _update_held(self, claim: Claim, **values: Any) -> bool:
        with self._writer.begin() as conn:
            return (
                conn.execute(update(jobs).where(self._holder(claim)).values(**values)).rowcount == 1
            )

    def renew(self, claim: Claim, *, lease_seconds: float) -> bool:
        return self._update_held(claim, lease_expires_at=time.time() + lease_seconds)

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
        )

    def reap_expired(self) -> int:
        now = time.time()
        expired = and_(jobs.c.state == JobState.RUNNING, jobs.c.lease_expires_at < now)
        with self._writer.begin() as conn:
            failed = conn.execute(
                update(jobs)
                .where(expired, jobs.c.attempts >= self.max_attempts)
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
            ).rowcount
            requeued = conn.execute(
                update(jobs)
                .where(expired)
                .values(
                    state=JobState.QUEUED,
                    lease_token=None,
                    lease_expires_at=None,
                    worker_id=None,
                    started_at=None,
                )
            ).rowcount
        return int(failed + requeued)

    def wait_for_change(self, timeout: float) -> bool:
        # PRAGMA data_version changes when any *other* connection commits; reading it takes
        # no lock, so polling it every few ms is far cheaper than trying to claim.
        deadline = time.monotonic() + timeout
        with self._watch_lock:
            if self._watch_connection is None:
                self._watch_connection = sqlite3.connect(
                    str(self._watch_path), isolation_level=None, check_same_thread=False
                )
            connection = self._watch_connection
            start = connection.execute("PRAGMA data_version").fetchone()[0]
            while True:
                if connection.execute("PRAGMA data_version").fetchone()[0] != start:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                time.sleep(min(CHANGE_POLL_SECONDS, remaining))

    def close(self) -> None:
        with self._watch_lock:
            if self._watch_connection is not None:
                self._watch_connection.close()
                self._watch_connection = None
        self.engine.dispose()
