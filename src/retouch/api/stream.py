"""Following a job as it runs: the server-sent event stream of its status changes, and the
wait behind `Prefer: wait=N`. Both sleep on the process's ChangeFeed, woken by changes of
their own job (a stream also when the queue moves), never in a poll loop of their own."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from fastapi.sse import format_sse_event
from starlette.concurrency import run_in_threadpool

from retouch.api.dependencies import store_read
from retouch.api.state import AppState
from retouch.contract.bodies import LogEntry, Result, Status
from retouch.contract.states import FINISHED_STATES
from retouch.jobs.models import Job
from retouch.jobs.outage import Backoff, is_unavailable
from retouch.responses import log_entries, webhook_state

T = TypeVar("T")

# A comment line this often keeps proxies from closing a quiet stream.
KEEPALIVE_SECONDS = 15.0
# A quiet stream checks this often whether its key was revoked (a cache read, and at most
# one database read per key per AUTH_CACHE_SECONDS in this process).
REVOCATION_CHECK_SECONDS = 1.0


async def _revoked(state: AppState, key_id: str) -> bool:
    """Whether the stream's key was revoked (or deleted) since the stream began. A database
    that does not answer revokes nothing: the stream goes on."""
    record = state.keys.cached_record(key_id)
    if record is None:
        try:
            record = await store_read(state, functools.partial(state.keys.record, key_id))
        except Exception as error:
            if not is_unavailable(error):
                raise
            return False
    return record is None or record.revoked_at is not None


def result_body(state: AppState, base: str, job: Job) -> Result:
    """The result body, with the webhook delivery's attempts when the job asked for one (the
    webhook's own body is the plain result: see retouch.webhooks). Blocking (a store read)."""
    body = state.responses.result(base, job)
    if job.webhook_url:
        body.webhook = webhook_state(job.webhook_url, state.store.delivery(job.id))
    return body


async def _read(state: AppState, job_id: str, key_id: str) -> Job | None:
    return await store_read(state, functools.partial(state.store.get, job_id, key_id=key_id))


def _job_and_logs(
    state: AppState, job_id: str, key_id: str
) -> tuple[Job | None, list[LogEntry] | None]:
    """The job and its log lines so far (none once it is gone). Blocking: one thread hop."""
    job = state.store.get(job_id, key_id=key_id)
    return job, (log_entries(state.store.logs(job_id)) if job is not None else None)


async def wait_for_end(state: AppState, job_id: str, key_id: str, timeout: float) -> Job | None:
    """The job once it has finished, or None if it is still unfinished after `timeout` (or the
    database stopped answering meanwhile: the job exists, so the caller answers as if the wait
    had ended, rather than with a 503 that a client might take for a submit that failed)."""
    deadline = time.monotonic() + timeout
    waiting = True
    with state.changes.follow(job_id) as changes:
        while True:
            changes.mark()
            try:
                job = await _read(state, job_id, key_id)
            except Exception as error:
                if not is_unavailable(error):
                    raise
                return None
            if job is None or job.state in FINISHED_STATES:
                return job
            if not waiting or state.changes.ending:  # ending: the server is stopping
                return None
            # After the deadline, one last read: the job may have ended just before it.
            waiting = await changes.wait(deadline - time.monotonic())


@dataclass(frozen=True)
class Snapshot(Generic[T]):
    """A followed job as one read found it: with its log lines when asked for, and once it has
    finished, what `finish` made of it (a surface's result body)."""

    job: Job
    lines: list[LogEntry] | None
    final: T | None


async def follow_job(
    state: AppState,
    job_id: str,
    key_id: str,
    finish: Callable[[Job], T],
    *,
    logs: bool = False,
) -> AsyncIterator[Snapshot[T] | str]:
    """The job at each change (a surface's event stream sends what differs), ending after the
    read that found it finished (`final` = `finish(job)`, a blocking call made in that read);
    a str is a comment to send (keep-alive, or waiting for the database). It also ends when the
    job is gone, the server is stopping (the ChangeFeed is `ending`: the client reconnects
    elsewhere) or the key was revoked. `logs`: each read has the log lines so far, and a new
    line is a change."""
    # Once the stream has started, a database that stops answering cannot become a 503: the
    # stream stays open (keep-alive comments) and reads again until it answers.
    backoff = Backoff()
    # Queue moves too, whatever the job's state at the last read: it may be requeued by the
    # next one. A running job's stream then re-reads at most once a second (few run at once).
    with state.changes.follow(job_id, queue_position=True) as changes:
        while True:
            changes.mark()
            try:
                lines = None
                if logs:
                    read_logs = functools.partial(_job_and_logs, state, job_id, key_id)
                    job, lines = await store_read(state, read_logs)
                else:
                    job = await _read(state, job_id, key_id)
                final = None
                if job is not None and job.state in FINISHED_STATES:
                    # Once per stream, on a thread: a surface's last body may read much.
                    final = await run_in_threadpool(finish, job)
            except Exception as error:
                if not is_unavailable(error):
                    raise
                if state.changes.ending:
                    return
                yield "waiting for the job database"
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            if job is None:  # expired or deleted while streaming
                return
            yield Snapshot(job, lines, final)
            if final is not None:
                return
            # Until the job changes: a keep-alive comment when quiet, and the end once the
            # server stops or the key is revoked (checked each second: a revocation ends
            # the stream within AUTH_CACHE_SECONDS more).
            quiet_since = time.monotonic()
            while not await changes.wait(REVOCATION_CHECK_SECONDS):
                if state.changes.ending or await _revoked(state, key_id):
                    return
                if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                    yield "keep-alive"
                    quiet_since = time.monotonic()
            if state.changes.ending or await _revoked(state, key_id):
                return


async def status_events(
    state: AppState, base: str, job_id: str, key_id: str, *, logs: bool = False
) -> AsyncIterator[bytes]:
    """`status` events (the status body) whenever it changes, then one `result` event with the
    result body, then the end of the stream (see follow_job). `logs`: both bodies carry the
    job's log lines so far, as `?logs=1` adds them to a poll's."""
    sent: Status | None = None
    finish = functools.partial(result_body, state, base)
    async for snapshot in follow_job(state, job_id, key_id, finish, logs=logs):
        if isinstance(snapshot, str):
            yield format_sse_event(comment=snapshot)
            continue
        status = state.responses.status(base, snapshot.job)
        if snapshot.lines is not None:
            status.logs = snapshot.lines
        if status != sent:
            yield format_sse_event(event="status", data_str=status.to_json().decode())
            sent = status
        result = snapshot.final
        if result is not None:
            if snapshot.lines is not None:
                result.logs = snapshot.lines
            yield format_sse_event(event="result", data_str=result.to_json().decode())
