"""Retention: finished requests and uploads are kept for a lifetime (RETOUCH_RETAIN_RESULTS,
RETOUCH_RETAIN_UPLOADS, or the key's own `retain_*_seconds`), then the sweeper deletes their
files and payloads. One process of a deployment sweeps at a time (the `leases` row
'retention'); each API process runs a `RetentionSweeper` thread that tries.

What an expired job keeps: its row (id, key, endpoint, state, times, error code and message,
`expired_at`), so /status and /result can say it expired instead of "not found"; and its
webhook delivery row (one small row: the delivery's final state), a still pending delivery
given up (its result is gone). What goes: its files, `input` (set to '{}'), `result`, its log
lines and its webhook attempts. An expired upload loses its file and its row.

Order: a job's files are deleted before its row is marked, so a crash between the two only
repeats a delete at the next sweep. An upload's file and row go in one short write
transaction that holds its row (SQLite's write lock, PostgreSQL's row lock), so an upload of
the same file at that moment (POST /v1/files writes its row first, then the file) either
refreshes the row first, and the sweeper leaves it, or waits and stores the file again.

Transactions stay short: jobs go in batches (`batch_size`, one transaction each, no file
I/O inside), uploads a few at a time within UPLOAD_TRANSACTION_SECONDS.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Engine,
    and_,
    delete,
    func,
    or_,
    select,
    tuple_,
    update,
)

from retouch.contract.states import FINISHED_STATES
from retouch.jobs.database import POSTGRES_NOW, dialect_insert, writer
from retouch.jobs.outage import Backoff, OutageLog, is_unavailable
from retouch.jobs.schema import (
    api_keys,
    job_logs,
    jobs,
    leases,
    uploads,
    webhook_attempts,
    webhook_deliveries,
)
from retouch.jobs.sql_store import give_up_deliveries
from retouch.storage.base import Storage

log = logging.getLogger(__name__)

LEASE_NAME: Final = "retention"
BATCH_SIZE: Final = 100
# Uploads are deleted inside the transaction that holds their rows: a transaction takes more
# of them only while it has been open less than this.
UPLOAD_TRANSACTION_SECONDS: Final = 0.02
# The first sweep after a process starts waits at most this long.
FIRST_SWEEP_SECONDS: Final = 5.0
# A job that finished before (last complete sweep - the longest lifetime - this) was expired
# by that sweep, so later sweeps start there: a clock of another host a little behind ours
# (finished_at is the worker's time) still finds its jobs.
CLOCK_SLACK_SECONDS: Final = 3600.0


class KeyUsage(NamedTuple):
    """What one key keeps on the server's storage, in bytes."""

    output_bytes: int
    upload_bytes: int


def usage_by_key(engine: Engine) -> dict[str, KeyUsage]:
    """Bytes kept per key id: the outputs of its jobs not yet expired (jobs.stored_bytes) and
    its uploads (uploads.bytes). Keys that keep nothing are absent. Two grouped reads."""
    outputs = (
        select(jobs.c.key_id, func.sum(jobs.c.stored_bytes))
        .where(jobs.c.expired_at.is_(None), jobs.c.stored_bytes.is_not(None))
        .group_by(jobs.c.key_id)
    )
    uploaded = select(uploads.c.key_id, func.sum(uploads.c.bytes)).group_by(uploads.c.key_id)
    with engine.connect() as conn:
        output_rows = conn.execute(outputs).all()
        upload_rows = conn.execute(uploaded).all()
    found: dict[str, list[int]] = {}
    for key_id, total in output_rows:
        found.setdefault(key_id, [0, 0])[0] = int(total or 0)
    for key_id, total in upload_rows:
        found.setdefault(key_id, [0, 0])[1] = int(total or 0)
    return {key_id: KeyUsage(*totals) for key_id, totals in found.items()}


def record_upload(engine: Engine, *, name: str, key_id: str, size: int) -> float:
    """Insert or refresh the row of an upload about to be stored (the same file uploaded
    again by the same key gets a new lifetime); returns its created_at. Written before the
    file: see the module's docstring."""
    now = time.time()
    statement = dialect_insert(engine.dialect.name)(uploads).values(
        name=name, key_id=key_id, bytes=size, created_at=now
    )
    statement = statement.on_conflict_do_update(
        index_elements=[uploads.c.name],
        set_={
            "key_id": statement.excluded.key_id,
            "bytes": statement.excluded.bytes,
            "created_at": statement.excluded.created_at,
        },
    )
    with writer(engine).begin() as conn:
        conn.execute(statement)
    return now


def forget_upload(engine: Engine, *, name: str, created_at: float) -> None:
    """Remove the row record_upload wrote when its file could not be stored (unless another
    upload of the same name has refreshed it since)."""
    with writer(engine).begin() as conn:
        conn.execute(
            delete(uploads).where(uploads.c.name == name, uploads.c.created_at == created_at)
        )


@dataclass
class SweepReport:
    """What one sweep deleted."""

    jobs: int = 0
    job_bytes: int = 0
    uploads: int = 0
    upload_bytes: int = 0

    @property
    def deleted_anything(self) -> bool:
        return bool(self.jobs or self.uploads)


@dataclass(frozen=True)
class _Lifetimes:
    """The shortest and longest lifetime any key has (its own or the default)."""

    shortest: float
    longest: float


class RetentionSweeper:
    """Deletes what has outlived its lifetime: `sweep()` once (when this process holds the
    lease), or `start()` a thread that sweeps every `interval` seconds until `stop()`."""

    def __init__(
        self,
        engine: Engine,
        storage: Storage,
        *,
        retain_results: float,
        retain_uploads: float,
        interval: float = 60.0,
        batch_size: int = BATCH_SIZE,
        holder: str | None = None,
        lease_seconds: float | None = None,
    ) -> None:
        self.engine = engine
        self.storage = storage
        self.retain_results = retain_results
        self.retain_uploads = retain_uploads
        self.interval = interval
        self.batch_size = batch_size
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # Renewed at every sweep and batch; a process that died is replaced once it passes.
        self.lease_seconds = lease_seconds or max(3 * interval, 30.0)
        self._postgres = engine.dialect.name == "postgresql"
        self._writer = writer(engine)
        self._floor: float | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.outage = OutageLog(log, "retention sweeper")

    # --- the lease --------------------------------------------------------------------

    def _now(self) -> ColumnElement[float] | float:
        return POSTGRES_NOW if self._postgres else time.time()

    def take_lease(self) -> bool:
        """Take the lease, or renew it; False while another process holds it."""
        now = self._now()
        statement = dialect_insert(self.engine.dialect.name)(leases).values(
            name=LEASE_NAME, holder=self.holder, expires_at=now + self.lease_seconds
        )
        statement = statement.on_conflict_do_update(
            index_elements=[leases.c.name],
            set_={"holder": statement.excluded.holder, "expires_at": statement.excluded.expires_at},
            where=or_(leases.c.holder == self.holder, leases.c.expires_at < now),
        )
        with self._writer.begin() as conn:
            conn.execute(statement)
            holder = conn.execute(
                select(leases.c.holder).where(leases.c.name == LEASE_NAME)
            ).scalar_one_or_none()
        return holder == self.holder

    def release_lease(self) -> None:
        with self._writer.begin() as conn:
            conn.execute(
                delete(leases).where(leases.c.name == LEASE_NAME, leases.c.holder == self.holder)
            )

    # --- sweeping ---------------------------------------------------------------------

    def sweep(self) -> SweepReport | None:
        """One pass over what has expired; None when another process holds the lease."""
        if not self.take_lease():
            return None
        report = SweepReport()
        started = time.time()
        lifetimes = self._lifetimes(api_keys.c.retain_results_seconds, self.retain_results)
        if self._sweep_jobs(started, lifetimes, report):
            self._floor = started - lifetimes.longest - CLOCK_SLACK_SECONDS
        uploads_lifetimes = self._lifetimes(api_keys.c.retain_uploads_seconds, self.retain_uploads)
        self._sweep_uploads(started, uploads_lifetimes, report)
        if report.deleted_anything:
            log.info(
                "retention: deleted %d expired request(s) (%d bytes of outputs) and %d "
                "upload(s) (%d bytes)",
                report.jobs,
                report.job_bytes,
                report.uploads,
                report.upload_bytes,
            )
        return report

    def _lifetimes(self, column: Any, default: float) -> _Lifetimes:
        with self.engine.connect() as conn:
            shortest, longest = conn.execute(select(func.min(column), func.max(column))).one()
        return _Lifetimes(
            min(default, shortest if shortest is not None else default),
            max(default, longest if longest is not None else default),
        )

    def _sweep_jobs(self, now: float, lifetimes: _Lifetimes, report: SweepReport) -> bool:
        """Whether the pass went to the end (not stopped, the lease not lost)."""
        lifetime = func.coalesce(api_keys.c.retain_results_seconds, self.retain_results)
        where = [
            # An index range on finished_at: nothing younger than the shortest lifetime, and
            # nothing a complete sweep already went past.
            jobs.c.finished_at < now - lifetimes.shortest,
            jobs.c.finished_at + lifetime < now,
            jobs.c.expired_at.is_(None),
            jobs.c.state.in_([str(state) for state in FINISHED_STATES]),
        ]
        if self._floor is not None:
            where.append(jobs.c.finished_at >= self._floor)
        after: tuple[float, int] | None = None
        while not self._stopping.is_set():
            query = (
                select(jobs.c.id, jobs.c.seq, jobs.c.finished_at, jobs.c.stored_bytes)
                .select_from(jobs.outerjoin(api_keys, api_keys.c.id == jobs.c.key_id))
                .where(*where)
                .order_by(jobs.c.finished_at, jobs.c.seq)
                .limit(self.batch_size)
            )
            if after is not None:
                query = query.where(tuple_(jobs.c.finished_at, jobs.c.seq) > tuple_(*after))
            with self.engine.connect() as conn:
                batch = conn.execute(query).all()
            if not batch:
                return True
            self._expire_jobs(batch, report)
            if len(batch) < self.batch_size:
                return True
            after = (batch[-1].finished_at, batch[-1].seq)
            if not self.take_lease():  # renewed between batches; lost, another sweeps
                return False
        return False

    def _expire_jobs(self, batch: Sequence[Any], report: SweepReport) -> None:
        ids = [row.id for row in batch]
        # Files first: a crash before the row is marked repeats this delete, never leaks.
        for job_id in ids:
            self.storage.delete_request(job_id)
        now = time.time()
        with self._writer.begin() as conn:
            expired = conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(ids), jobs.c.expired_at.is_(None))
                .values(expired_at=now, input="{}", result=None)
            ).rowcount
            conn.execute(delete(job_logs).where(job_logs.c.job_id.in_(ids)))
            conn.execute(delete(webhook_attempts).where(webhook_attempts.c.job_id.in_(ids)))
            give_up_deliveries(conn, webhook_deliveries.c.job_id.in_(ids), now)
        report.jobs += expired
        report.job_bytes += sum(row.stored_bytes or 0 for row in batch)

    def _sweep_uploads(self, now: float, lifetimes: _Lifetimes, report: SweepReport) -> None:
        lifetime = func.coalesce(api_keys.c.retain_uploads_seconds, self.retain_uploads)
        after: tuple[float, str] | None = None
        while not self._stopping.is_set():
            query = (
                select(uploads.c.name, uploads.c.created_at)
                .select_from(uploads.outerjoin(api_keys, api_keys.c.id == uploads.c.key_id))
                .where(
                    uploads.c.created_at < now - lifetimes.shortest,
                    uploads.c.created_at + lifetime < now,
                )
                .order_by(uploads.c.created_at, uploads.c.name)
                .limit(self.batch_size)
            )
            if after is not None:
                query = query.where(tuple_(uploads.c.created_at, uploads.c.name) > tuple_(*after))
            with self.engine.connect() as conn:
                batch = conn.execute(query).all()
            if not batch:
                return
            pending = list(batch)
            while pending:
                pending = self._expire_uploads(pending, report)
            if len(batch) < self.batch_size:
                return
            after = (batch[-1].created_at, batch[-1].name)
            if not self.take_lease():
                return

    def _expire_uploads(self, pending: list[Any], report: SweepReport) -> list[Any]:
        """Deletes uploads of `pending` in one transaction, for as long as it stays short;
        returns those left for the next."""
        started = time.monotonic()
        with self._writer.begin() as conn:
            while pending and (time.monotonic() - started < UPLOAD_TRANSACTION_SECONDS):
                row = pending.pop(0)
                # Still this upload (not refreshed by a new upload since), held until commit.
                held = conn.execute(
                    select(uploads.c.bytes)
                    .where(uploads.c.name == row.name, uploads.c.created_at == row.created_at)
                    .with_for_update(skip_locked=True)
                ).one_or_none()
                if held is None:
                    continue
                self.storage.delete(row.name)
                conn.execute(
                    delete(uploads).where(
                        and_(uploads.c.name == row.name, uploads.c.created_at == row.created_at)
                    )
                )
                report.uploads += 1
                report.upload_bytes += int(held.bytes)
        return pending

    # --- the thread -------------------------------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="retention-sweeper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (a sweep in progress ends after its batch) and hand the lease
        back, so another process can take it at once."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        backoff = Backoff()
        pause = min(self.interval, FIRST_SWEEP_SECONDS)
        while not self._stopping.wait(pause):
            pause = self.interval
            try:
                self.sweep()
            except Exception as error:
                if not is_unavailable(error):
                    log.exception("retention: the sweep failed; trying again in %.0f s", pause)
                    continue
                self.outage.failed(error)
                pause = backoff.next()
                continue
            self.outage.recovered()
            backoff.reset()
        try:
            self.release_lease()
        except Exception as error:  # the lease runs out by itself
            if not is_unavailable(error):
                log.exception("retention: could not release the lease")
