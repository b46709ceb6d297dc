"""fal's queue bodies (submit, status, the model's output, the webhook) built from stored
jobs. Every model allows extra fields, as the contract's bodies do: `seed`, `warnings` and
`has_nsfw_concepts` ride beside fal's own fields in the output."""

from __future__ import annotations

import base64
from typing import Any, Literal

from pydantic import Field

from retouch.api.state import AppState
from retouch.contract.bodies import Body, LogEntry, Timestamp
from retouch.contract.states import JobState
from retouch.jobs.models import Job
from retouch.responses import stored_result

FalStatusName = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
PREFIX = "/fal"
RUN_PREFIX = "/fal-run"
# A surface value of jobs.surface: fal's, and fal's with sync_mode (data: URIs out).
SURFACE = "fal"
SYNC_SURFACE = "fal+sync"
CANCELLED_TYPE = "request_cancelled"
# Failures that are the input's fault (fal answers them 422, as its apps' validation); any
# other failure (the engine's, storage, a lost worker) is the server's: 500.
INPUT_FAILURES = frozenset({"invalid_input_image", "content_policy_violation"})


class FalSubmission(Body):
    request_id: str
    response_url: str
    status_url: str
    cancel_url: str
    queue_position: int


class FalLog(Body):
    message: str
    level: str
    source: str = "user"
    timestamp: Timestamp


class FalStatus(Body):
    """`logs` is always present (null unless `?logs=1`): fal's clients read it."""

    status: FalStatusName
    request_id: str
    response_url: str
    status_url: str
    cancel_url: str
    queue_position: int | None = None
    logs: list[FalLog] | None = None
    metrics: dict[str, float] | None = None
    error: str | None = None
    error_type: str | None = None


class FalFile(Body):
    url: str
    content_type: str
    file_name: str
    file_size: int
    width: int | None = None
    height: int | None = None


class FalOutput(Body):
    images: list[FalFile]
    description: str = ""
    seed: int | None = None
    has_nsfw_concepts: list[bool] | None = None
    warnings: list[str] = Field(default_factory=list)


class FalError(Body):
    """A failed or cancelled request's response: what went wrong, and its error code."""

    detail: str
    error_type: str


class CancelAnswer(Body):
    status: Literal["CANCELLATION_REQUESTED", "ALREADY_COMPLETED", "IN_PROGRESS", "NOT_FOUND"]
    detail: str | None = None


class FalWebhook(Body):
    """fal's webhook body: `payload` is the output, or `{detail, error_type}` on failure."""

    request_id: str
    gateway_request_id: str
    status: Literal["OK", "ERROR"]
    payload: dict[str, Any] | None
    error: str | None = None


def app_path(state: AppState, job: Job) -> str:
    """`owner/alias` of the job's endpoint on fal: its request URLs sit under it."""
    served = state.endpoints.get(job.endpoint)
    fal_id = served.fal_id if served is not None else job.endpoint
    return "/".join(fal_id.split("/")[:2])


def request_root(state: AppState, base: str, job: Job) -> str:
    return f"{base}{PREFIX}/{app_path(state, job)}/requests/{job.id}"


def submitted(state: AppState, base: str, job: Job) -> FalSubmission:
    root = request_root(state, base, job)
    return FalSubmission(
        request_id=job.id,
        response_url=root,
        status_url=f"{root}/status",
        cancel_url=f"{root}/cancel",
        queue_position=job.queue_position or 0,
    )


def fal_logs(lines: list[LogEntry]) -> list[FalLog]:
    return [
        FalLog(message=line.message, level=line.level.upper(), source="user", timestamp=line.time)
        for line in lines
    ]


def failure(job: Job) -> tuple[str, str] | None:
    """The error message and error_type of a failed or cancelled job (None for any other)."""
    if job.state is JobState.FAILED:
        return job.error_message or "the request failed", job.error_code or "internal_error"
    if job.state is JobState.CANCELLED:
        return "the request was cancelled", CANCELLED_TYPE
    return None


def status(state: AppState, base: str, job: Job, lines: list[LogEntry] | None) -> FalStatus:
    root = request_root(state, base, job)
    fields: dict[str, Any] = {
        "request_id": job.id,
        "response_url": root,
        "status_url": f"{root}/status",
        "cancel_url": f"{root}/cancel",
        "logs": fal_logs(lines) if lines is not None else None,
    }
    if job.state is JobState.QUEUED:
        return FalStatus(status="IN_QUEUE", queue_position=job.queue_position or 0, **fields)
    if job.state is JobState.RUNNING:
        return FalStatus(status="IN_PROGRESS", **fields)
    if job.started_at is not None and job.finished_at is not None:
        fields["metrics"] = {"inference_time": round(job.finished_at - job.started_at, 3)}
    failed = failure(job)
    if failed is not None:
        fields["error"], fields["error_type"] = failed
    return FalStatus(status="COMPLETED", **fields)


def output(state: AppState, base: str, job: Job, *, data_uris: bool = False) -> FalOutput:
    """A succeeded job's output in fal's shape; `data_uris` (sync_mode) inlines each image,
    read from storage (blocking)."""
    files = state.responses.output_files(base, job)
    images = []
    for file in files:
        url = file.url
        if data_uris:
            encoded = base64.b64encode(state.storage.read(file.name)).decode()
            url = f"data:{file.content_type};base64,{encoded}"
        images.append(
            FalFile(
                url=url,
                content_type=file.content_type,
                file_name=file.name.rsplit("/", 1)[-1],
                file_size=file.size,
                width=file.width,
                height=file.height,
            )
        )
    stored = stored_result(job)
    fields: dict[str, Any] = {"images": images, "description": ""}
    if files:
        fields["seed"] = files[0].seed
    if stored is not None:
        fields["warnings"] = stored.warnings
        if stored.has_nsfw_concepts is not None:
            fields["has_nsfw_concepts"] = stored.has_nsfw_concepts
    return FalOutput(**fields)


def webhook(state: AppState, base: str, job: Job) -> FalWebhook:
    """The webhook body of an ended job (URLs, never data: URIs: see the README)."""
    failed = failure(job)
    if failed is None:
        payload = output(state, base, job).model_dump(mode="json", exclude_unset=True)
        return FalWebhook(
            request_id=job.id, gateway_request_id=job.id, status="OK", payload=payload
        )
    message, error_type = failed
    return FalWebhook(
        request_id=job.id,
        gateway_request_id=job.id,
        status="ERROR",
        payload={"detail": message, "error_type": error_type},
        error=message,
    )
