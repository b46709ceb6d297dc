"""What the store hands out: plain immutable records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from retouch.contract.bodies import Generation, ModelInfo, References
from retouch.contract.states import JobState


@dataclass(frozen=True)
class Job:
    id: str
    seq: int
    key_id: str
    endpoint: str
    input: dict[str, Any] | None
    """None when not loaded: status and result reads skip it (it can hold megabytes of
    data: URIs, and parsing it would stall every poll)."""
    state: JobState
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    result: dict[str, Any] | None
    error_code: str | None
    error_message: str | None
    progress_step: int | None = None
    progress_total: int | None = None
    queue_position: int | None = None
    """How many queued jobs run before this one (0 = next); set by `get` while queued."""
    webhook_url: str | None = None
    base_url: str | None = None
    """The base of the absolute URLs handed out for this job (its submit's, or the public one)."""
    replayed: bool = False
    """Set by `submit` when an Idempotency-Key matched: this is the original job, not a new one."""
    queue_round: int = 0
    """Its place in the fair order of the queue (see schema.jobs.queue_round)."""
    stored_bytes: int | None = None
    worker_id: str | None = None
    """The worker running it (or that last ran it)."""
    expired_at: float | None = None
    """When retention deleted its files and payloads; its status then says it expired."""
    surface: str | None = None
    """The protocol it was submitted through (None: the contract's own; see schema.jobs)."""

    @classmethod
    def from_row(cls, row: Any) -> Job:
        return cls(
            id=row.id,
            seq=row.seq,
            key_id=row.key_id,
            endpoint=row.endpoint,
            input=json.loads(row.input) if "input" in row._fields else None,
            state=JobState(row.state),
            attempts=row.attempts,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            result=json.loads(row.result) if row.result else None,
            error_code=row.error_code,
            error_message=row.error_message,
            progress_step=row.progress_step,
            progress_total=row.progress_total,
            queue_position=getattr(row, "queue_position", None),
            webhook_url=row.webhook_url,
            base_url=row.base_url,
            queue_round=row.queue_round,
            stored_bytes=row.stored_bytes,
            expired_at=row.expired_at,
            worker_id=row.worker_id,
            surface=row.surface,
        )


@dataclass(frozen=True)
class Claim:
    """A job a worker holds. Only the holder of `lease_token` may renew or finish it."""

    job: Job
    lease_token: str


class QueueFull(Exception):
    """More jobs are queued than the server accepts; the client should retry later."""


class KeyQueueFull(Exception):
    """The key already has as many jobs queued as it may; it should wait for some to start."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the key already has {limit} jobs queued")
        self.limit = limit


@dataclass(frozen=True)
class Idempotency:
    """A submit's Idempotency-Key and the hash of what it asked for."""

    key: str
    request_hash: str


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used, within its lifetime, for a different request."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id


@dataclass(frozen=True)
class Delivery:
    """A webhook delivery a dispatcher holds (its lease) until it records the attempt."""

    job_id: str
    key_id: str
    url: str
    attempts: int
    give_up_at: float
    lease_expires_at: float
    """Also the lease's identity: only the dispatcher that took this lease records the attempt."""


@dataclass(frozen=True)
class DeliveryAttempt:
    at: float
    status_code: int | None
    error: str | None
    duration_ms: float


@dataclass(frozen=True)
class DeliveryRecord:
    """A job's webhook delivery as the request shows it."""

    url: str
    state: str
    next_attempt_at: float | None
    finished_at: float | None
    attempts: list[DeliveryAttempt]


@dataclass(frozen=True)
class RequestPage:
    jobs: list[Job]
    next_cursor: int | None
    """The seq to pass as `before` for the next (older) page; None on the last page."""


@dataclass(frozen=True)
class EndpointLoad:
    """An endpoint's unfinished jobs, and the one that has waited longest (the operator's
    queue view)."""

    endpoint: str
    queued: int
    running: int
    oldest_queued_id: str | None
    oldest_queued_at: float | None


@dataclass(frozen=True)
class FailureGroup:
    """Failed jobs that share an error code, and the newest of them."""

    code: str
    count: int
    last_at: float
    last_id: str
    last_message: str | None


@dataclass(frozen=True)
class QueueSnapshot:
    """The operator's queue view as the store reads it (`queue_overview`)."""

    at: float
    """The store's "now": the failures counted finished at or after `at` - the window."""
    endpoints: tuple[EndpointLoad, ...]
    """Every endpoint with queued or running jobs, by id."""
    failures: tuple[FailureGroup, ...]
    """By error code, most frequent first."""


@dataclass(frozen=True)
class LogLine:
    at: float
    level: str
    message: str


@dataclass(frozen=True)
class WorkerRecord:
    id: str
    started_at: float
    last_seen: float
    info: dict[str, Any]


class StoredOutput(BaseModel):
    """One stored output file of a succeeded job."""

    file: str
    """Its storage name, `<job id>/<index>-<attempt>.<ext>`; the result signs a URL for it."""
    content_type: str
    size: int = Field(validation_alias=AliasChoices("bytes", "size"), serialization_alias="bytes")
    seed: int


class StoredResult(BaseModel):
    """What a succeeded job stores (`run_edit_job` makes it, the worker stores it, the result
    body shows it): its files, and the extras the result shows as they are."""

    model_config = ConfigDict(populate_by_name=True)

    outputs: list[StoredOutput]
    model: ModelInfo | None = None
    generation: Generation | None = None
    references: References | None = None
    has_nsfw_concepts: list[bool] | None = None
    warnings: list[str] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)

    def as_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)
