"""The contract's response bodies (retouch.contract.bodies) built from stored jobs, for the API's
routes and for the webhook dispatcher (whose body is the result body)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from retouch.contract.bodies import (
    JobError,
    LogEntry,
    Output,
    Progress,
    RequestSummary,
    Result,
    Status,
    Submission,
    WebhookAttempt,
    WebhookState,
    WorkerInfo,
    from_timestamp,
)
from retouch.contract.states import FINISHED_STATES, RESULT_NAMES, STATUS_NAMES, JobState
from retouch.jobs.models import DeliveryRecord, Job, LogLine, StoredResult, WorkerRecord
from retouch.storage.signing import UrlSigner

# Stored with a job's result beside its outputs, and shown on the result as they are.
_RESULT_EXTRAS = frozenset(
    ("model", "warnings", "generation", "references", "has_nsfw_concepts", "timings")
)


@dataclass(frozen=True)
class OutputFile:
    """One output image of a succeeded job, as the fal and Replicate surfaces describe it."""

    url: str
    """Signed (or the bucket's presigned URL): fetched without the API key."""
    name: str
    """Its storage name, `<job id>/<file>`."""
    content_type: str
    size: int
    width: int | None
    height: int | None
    seed: int


def stored_result(job: Job) -> StoredResult | None:
    return StoredResult.model_validate(job.result) if job.result else None


def request_urls(base: str, job_id: str) -> tuple[str, str, str]:
    """The status, result and cancel URLs of a request."""
    root = f"{base}/v1/requests/{job_id}"
    return f"{root}/status", f"{root}/result", f"{root}/cancel"


def retry_after(job: Job) -> int | None:
    """Seconds a poller should wait before asking again; None once the job has finished.
    A queued job far back waits longer, up to 10 s."""
    if job.state in FINISHED_STATES:
        return None
    return min(1 + (job.queue_position or 0), 10)


def log_entries(lines: list[LogLine]) -> list[LogEntry]:
    return [
        LogEntry(time=from_timestamp(line.at), level=line.level, message=line.message)
        for line in lines
    ]


def worker_infos(records: list[WorkerRecord]) -> list[WorkerInfo]:
    return [
        WorkerInfo(
            id=record.id,
            started_at=from_timestamp(record.started_at),
            last_seen=from_timestamp(record.last_seen),
            **record.info,
        )
        for record in records
    ]


def webhook_state(url: str, delivery: DeliveryRecord | None) -> WebhookState:
    """A job's webhook as its result shows it: `waiting_for_job` until the job ends."""
    if delivery is None:
        return WebhookState(url=url, state="waiting_for_job", attempts=[])
    return WebhookState(
        url=delivery.url,
        state=delivery.state,
        next_attempt_at=from_timestamp(delivery.next_attempt_at),
        finished_at=from_timestamp(delivery.finished_at),
        attempts=[
            WebhookAttempt(
                at=from_timestamp(attempt.at),
                status_code=attempt.status_code,
                error=attempt.error,
                duration_ms=round(attempt.duration_ms, 1),
            )
            for attempt in delivery.attempts
        ],
    )


class ResponseBuilder:
    """Builds bodies that hold signed file URLs, so it holds the signer and their lifetime."""

    def __init__(
        self,
        signer: UrlSigner,
        url_ttl_seconds: int,
        presign: Callable[[str, int], str] | None = None,
    ) -> None:
        self.signer = signer
        self.url_ttl_seconds = url_ttl_seconds
        # RETOUCH_S3_PRESIGN: outputs are handed out as the bucket's own presigned URLs.
        self.presign = presign

    def file_url(self, base: str, name: str) -> str:
        expires, signature = self.signer.sign(name, self.url_ttl_seconds)
        return f"{base}/v1/files/{name}?{urlencode({'expires': expires, 'sig': signature})}"

    def output_url(self, base: str, name: str) -> str:
        """An output's URL in a result: ours (file_url), or the store's presigned one."""
        if self.presign is not None:
            return self.presign(name, self.url_ttl_seconds)
        return self.file_url(base, name)

    def output_files(self, base: str, job: Job) -> list[OutputFile]:
        """A succeeded job's images with their signed URLs (none for any other job)."""
        stored = stored_result(job)
        if job.state is not JobState.SUCCEEDED or stored is None:
            return []
        size = stored.generation
        return [
            OutputFile(
                url=self.output_url(base, output.file),
                name=output.file,
                content_type=output.content_type,
                size=output.size,
                width=size.width if size else None,
                height=size.height if size else None,
                seed=output.seed,
            )
            for output in stored.outputs
        ]

    @staticmethod
    def submitted(base: str, job: Job) -> Submission:
        status_url, result_url, cancel_url = request_urls(base, job.id)
        return Submission(
            request_id=job.id, status_url=status_url, result_url=result_url, cancel_url=cancel_url
        )

    @staticmethod
    def status(base: str, job: Job) -> Status:
        status_url, result_url, _ = request_urls(base, job.id)
        fields: dict[str, Any] = {"request_id": job.id, "status": STATUS_NAMES[job.state]}
        if job.state is JobState.QUEUED:
            fields["queue_position"] = job.queue_position
        if job.state is JobState.RUNNING and job.progress_total:
            step = job.progress_step or 0
            fields["progress"] = Progress(
                step=step, total=job.progress_total, fraction=round(step / job.progress_total, 4)
            )
        return Status(status_url=status_url, result_url=result_url, **fields)

    @staticmethod
    def listed(base: str, job: Job) -> RequestSummary:
        """One request in GET /v1/requests."""
        status_url, result_url, _ = request_urls(base, job.id)
        return RequestSummary(
            request_id=job.id,
            endpoint=job.endpoint,
            status=RESULT_NAMES[job.state],
            created_at=from_timestamp(job.created_at),
            started_at=from_timestamp(job.started_at),
            finished_at=from_timestamp(job.finished_at),
            status_url=status_url,
            result_url=result_url,
        )

    def result(self, base: str, job: Job) -> Result:
        """The result body (without the webhook's state: the webhook's own body is this)."""
        fields: dict[str, Any] = {"request_id": job.id, "status": RESULT_NAMES[job.state]}
        stored = stored_result(job)
        if job.state is JobState.SUCCEEDED and stored is not None:
            urls = [output.url for output in self.output_files(base, job)]
            fields["output"] = (
                Output(images=urls, image=urls[0]) if len(urls) == 1 else Output(images=urls)
            )
        if job.state is JobState.FAILED:
            fields["error"] = JobError(code=job.error_code or "", message=job.error_message or "")
        if stored is not None:
            # Our additions live beside the contract's fields, never instead of them.
            fields.update(
                {name: getattr(stored, name) for name in stored.model_fields_set & _RESULT_EXTRAS}
            )
        return Result(
            created_at=from_timestamp(job.created_at),
            finished_at=from_timestamp(job.finished_at),
            started_at=from_timestamp(job.started_at),
            attempts=job.attempts,
            **fields,
        )
