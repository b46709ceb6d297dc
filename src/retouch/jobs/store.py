"""The job store interface: the durable queue and every job's state machine.

queued → running → succeeded | failed; queued → cancelled; running → queued again when its
lease expires (the worker died), up to max_attempts, then failed with `worker_lost`.
Split into the narrow roles its callers play, so each depends on what it uses only:
RequestStore (the API), ClaimStore (a worker's jobs), WebhookOutbox (the dispatcher),
WorkerRegistry (heartbeats), ChangeSource (wake-ups); JobStore is all of them, as a backend
implements it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from retouch.contract.states import JobState
from retouch.jobs.models import (
    Claim,
    Delivery,
    DeliveryAttempt,
    DeliveryRecord,
    Idempotency,
    Job,
    LogLine,
    QueueSnapshot,
    RequestPage,
    WorkerRecord,
)

WORKER_LOST = "worker_lost"


@dataclass(frozen=True)
class Reaped:
    """What one reap_expired did with the running jobs whose lease had expired."""

    requeued: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    """Given up (`worker_lost`): ended, so the files their attempts stored are no one's
    outcome and the caller removes them."""

    @property
    def count(self) -> int:
        return len(self.requeued) + len(self.failed)


class RequestStore(Protocol):
    """What the API does with requests: submit, read, list and cancel them, read their logs
    and their webhook delivery."""

    local_reads: bool
    """True when a read is a local file read that never waits (SQLite in WAL mode): the API
    then reads on its event loop, cheaper than a thread hop. False for a network database,
    whose round trips must never stall other requests."""

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
        """Store a new queued job (`surface`: the protocol it came through, None for the
        contract's own); `admit(conn)` runs in its transaction before the caps (a
        key's rate: it may raise, and a refused submit writes nothing); raises QueueFull
        when max_queued jobs already wait, and KeyQueueFull when key_max_queued of this
        key's do. Jobs are claimed fairly across keys (round robin), then oldest first.
        With an idempotency key seen in the last 24 h: the original job (replayed=True) when
        the request hash matches, IdempotencyConflict when it does not."""
        ...

    def list_jobs(
        self,
        *,
        key_id: str | None,
        limit: int,
        before: int | None = None,
        state: JobState | None = None,
    ) -> RequestPage:
        """A key's jobs (every key's with None: the admin view), newest first, older than the
        `before` cursor (a job's seq), in `state` if given."""
        ...

    def jobs_per_key(self) -> dict[str, dict[JobState, int]]:
        """How many jobs each key has in each state (the admin view)."""
        ...

    def queue_overview(self, *, failures_within: float) -> QueueSnapshot:
        """The operator's queue view: per endpoint with unfinished jobs, how many are queued
        and running and the oldest queued one; and the jobs failed in the last
        `failures_within` seconds by error code, most frequent first, each code with its
        newest failure."""
        ...

    def get(self, job_id: str, *, key_id: str) -> Job | None:
        """The job, with its queue position, if it exists and belongs to key_id; None
        otherwise (the two look alike)."""
        ...

    def input_of(self, job_id: str, *, key_id: str) -> dict[str, Any] | None:
        """The key's job's stored input (the contract's fields), which `get` leaves out;
        None when there is no such job."""
        ...

    def cancel(
        self, job_id: str, *, key_id: str, running_too: bool = False, any_key: bool = False
    ) -> tuple[Job, bool] | None:
        """Cancel a queued job (and with running_too, a running one: its lease is revoked, so
        its worker stops and can store nothing) atomically. Returns (job as it is now,
        whether this call cancelled it), or None when there is no such job for this key (for
        any key with any_key: an admin's cancel)."""
        ...

    def end_work_of_revoked(self, conn: Any, key_ids: list[str], *, running_too: bool) -> list[str]:
        """In the transaction (`conn`) that revokes these keys: cancel their queued jobs (and
        running ones with running_too) and give up their pending webhooks. Returns the
        cancelled jobs that had started (files of earlier attempts may remain)."""
        ...

    def logs(self, job_id: str) -> list[LogLine]: ...

    def delivery(self, job_id: str) -> DeliveryRecord | None: ...


class ClaimStore(Protocol):
    """What a worker does with the jobs it runs: claim one, hold its lease, report on it and
    finish it, only while it holds the lease."""

    def claim(
        self,
        *,
        worker_id: str,
        lease_seconds: float,
        endpoints: Sequence[str] | None = None,
        reap: bool = True,
        given_up: Callable[[tuple[str, ...]], None] | None = None,
    ) -> Claim | None:
        """Take the next queued job (of these endpoints) in the fair order (round robin over
        keys, then oldest first), skipping keys that run as many jobs as they may, if any.
        Unless reap=False, reap expired leases first, at most about once a second while jobs
        are there to take (a busy claimer does not pay a reap per job), and always before
        answering None (a lost job is never left waiting while a worker idles). `given_up`
        is called with the jobs a reap failed (worker_lost): a worker removes the files their
        attempts stored."""
        ...

    def is_held(self, claim: Claim) -> bool:
        """Whether the claim still holds the job (not reaped, not cancelled)."""
        ...

    def renew(self, claim: Claim, *, lease_seconds: float) -> bool:
        """Extend the lease; False when it was lost (expired and reaped, or job finished)."""
        ...

    def report_progress(self, claim: Claim, *, step: int, total: int) -> bool: ...

    def add_log(self, job_id: str, *, level: str, message: str) -> None: ...

    def complete(self, claim: Claim, *, result: dict[str, Any]) -> bool:
        """running → succeeded, only for the lease holder. False when the lease was lost."""
        ...

    def fail(self, claim: Claim, *, code: str, message: str) -> bool:
        """running → failed, only for the lease holder. False when the lease was lost."""
        ...

    def release(self, claim: Claim) -> bool:
        """running → queued without counting the attempt (the worker is shutting down)."""
        ...

    def reap_expired(self) -> Reaped:
        """Requeue (or fail, past max_attempts) running jobs whose lease expired."""
        ...


class WebhookOutbox(Protocol):
    """The webhook deliveries written when jobs end, as the dispatcher sends them."""

    def claim_deliveries(self, *, limit: int, lease_seconds: float) -> list[Delivery]:
        """Take due webhook deliveries for one attempt each (leased, so one sender at a time)."""
        ...

    def record_delivery_attempt(
        self,
        delivery: Delivery,
        attempt: DeliveryAttempt,
        *,
        delivered: bool,
        retry_at: float | None,
    ) -> None: ...

    def next_delivery_at(self) -> float | None: ...


class WorkerRegistry(Protocol):
    """Workers' heartbeats: who is alive, serving what."""

    def heartbeat(self, worker_id: str, *, info: dict[str, Any]) -> None:
        """Record that a worker lives, with what it serves and its memory."""
        ...

    def remove_worker(self, worker_id: str) -> None: ...

    def workers(self, *, seen_within: float) -> list[WorkerRecord]: ...


@dataclass(frozen=True)
class JobChanges:
    """One batch of changes a store's watcher heard (see ChangeSource.watch_jobs)."""

    job_ids: frozenset[str] = frozenset()
    """The jobs whose row changed: each one's waiters re-read it."""
    queue_moved: bool = False
    """A job left the queue, or re-entered it ahead of others: queue positions changed
    without the rows of the jobs that still wait."""
    everything: bool = False
    """Changes may have gone unheard (the listener reconnected, a read failed, the watch
    just began): every waiter re-reads."""

    def __or__(self, other: JobChanges) -> JobChanges:
        return JobChanges(
            self.job_ids | other.job_ids,
            self.queue_moved or other.queue_moved,
            self.everything or other.everything,
        )


class ChangeSource(Protocol):
    """Noticing that the store changed, without polling the jobs themselves: any commit
    (change_token, wait_for_change: an idle worker), or which jobs changed (watch_jobs: the
    API's waiters, each woken by its own job only)."""

    def change_token(self) -> int:
        """A marker of the database's state, for wait_for_change(since=...)."""
        ...

    def wait_for_change(self, timeout: float, *, since: int | None = None) -> bool:
        """Block until another connection commits a change (after `since`, a change_token
        taken earlier; else after this call), or timeout. True on a change. Cheap: an idle
        worker calls it in a loop instead of sleeping between claims."""
        ...

    def watch_jobs(self, callback: Callable[[JobChanges], None]) -> Callable[[], None]:
        """Call `callback` with each batch of job changes committed from now on, from the
        store's watcher thread (so it must only hand them on), until the returned function
        is called. Returns at once: the first batch, `everything`, comes once the watch is
        in place and covers whatever changed before."""
        ...


class WebhookStore(RequestStore, WebhookOutbox, Protocol):
    """What the webhook dispatcher needs: the outbox, and the jobs whose result it sends."""


class WorkerStore(ClaimStore, WorkerRegistry, ChangeSource, Protocol):
    """What a worker needs: its claims, its heartbeat, and a wake-up when jobs arrive."""


class JobStore(RequestStore, ClaimStore, WebhookOutbox, WorkerRegistry, ChangeSource, Protocol):
    """The whole store, as one backend implements it and a data dir's services hold it."""

    def close(self) -> None: ...
