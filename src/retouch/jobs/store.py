"""The job store interface: the durable queue and every job's state machine.

queued → running → succeeded | failed; queued → cancelled; running → queued again when its
lease expires (the worker died), up to max_attempts, then failed with `worker_lost`.
Callers depend on this Protocol only, so a PostgreSQL backend can follow without them changing.
"""

from __future__ import annotations

from typing import Any, Protocol

from retouch.jobs.models import Claim, Job

WORKER_LOST = "worker_lost"


class JobStore(Protocol):
    def submit(self, *, key_id: str, endpoint: str, input: dict[str, Any], max_queued: int) -> Job:
        """Store a new queued job; raises QueueFull when max_queued jobs already wait."""
        ...

    def get(self, job_id: str, *, key_id: str) -> Job | None:
        """The job, with its queue position, if it exists and belongs to key_id; None
        otherwise (the two look alike)."""
        ...

    def cancel(self, job_id: str, *, key_id: str) -> tuple[Job, bool] | None:
        """Cancel a queued job atomically. Returns (job as it is now, whether this call
        cancelled it), or None when there is no such job for this key."""
        ...

    def claim(self, *, worker_id: str, lease_seconds: float) -> Claim | None:
        """Reap expired leases, then take the oldest queued job, if any."""
        ...

    def renew(self, claim: Claim, *, lease_seconds: float) -> bool:
        """Extend the lease; False when it was lost (expired and reaped, or job finished)."""
        ...

    def complete(self, claim: Claim, *, result: dict[str, Any]) -> bool:
        """running → succeeded, only for the lease holder. False when the lease was lost."""
        ...

    def fail(self, claim: Claim, *, code: str, message: str) -> bool:
        """running → failed, only for the lease holder. False when the lease was lost."""
        ...

    def release(self, claim: Claim) -> bool:
        """running → queued without counting the attempt (the worker is shutting down)."""
        ...

    def reap_expired(self) -> int:
        """Requeue (or fail, past max_attempts) running jobs whose lease expired."""
        ...

    def count_queued(self) -> int: ...

    def wait_for_change(self, timeout: float) -> bool:
        """Block until another connection commits a change, or timeout. True on a change.
        Cheap: an idle worker calls it in a loop instead of sleeping between claims."""
        ...

    def close(self) -> None: ...
