"""Typed answers of the API. Every model allows extra fields, so fields a newer server adds
reach the caller (as attributes) instead of breaking the client."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from retouch.contract.states import RESULT_NAMES, STATUS_NAMES, JobState

_FINISHED = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
# The names /status and /result use for a finished job (from the contract, one source).
FINISHED_STATUSES = frozenset(STATUS_NAMES[state] for state in _FINISHED)
FINISHED_RESULTS = frozenset(RESULT_NAMES[state] for state in _FINISHED)


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class EditFields(TypedDict, total=False):
    """The optional input fields of the nano-banana-2/edit contract (the server checks them)."""

    num_images: int
    seed: int
    aspect_ratio: str
    resolution: str
    output_format: str
    safety_tolerance: int
    limit_generations: bool
    enable_web_search: bool


class SubmitOptions(EditFields, total=False):
    """What a submit takes besides the prompt and the images."""

    endpoint: str  # default: google/nano-banana-2/edit
    idempotency_key: str | None
    webhook: str | None


class _AboutJob(_Model):
    """A body about one job."""

    request_id: str
    status: str


class _Timestamped(_AboutJob):
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class Submission(_Model):
    """The answer to a submit: the request id and where to follow it."""

    request_id: str
    status_url: str | None = None
    result_url: str | None = None
    cancel_url: str | None = None


class Progress(_Model):
    step: int
    total: int
    fraction: float


class Status(_AboutJob):
    """`in_queue` (with `queue_position`, 0 = next), `in_progress` (with `progress` once
    denoising starts), `completed` (succeeded or failed: see the result) or `cancelled`."""

    queue_position: int | None = None
    progress: Progress | None = None
    status_url: str | None = None
    result_url: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES


class Output(_Model):
    images: list[str] = Field(default_factory=list)
    image: str | None = None


class JobError(_Model):
    code: str
    message: str


class Result(_Timestamped):
    """`succeeded` (with `output`), `failed` (with `error`), `cancelled`, or still
    `in_queue` / `in_progress`."""

    output: Output | None = None
    error: JobError | None = None
    attempts: int | None = None
    model: dict[str, Any] | None = None
    warnings: list[str] = Field(default_factory=list)
    generation: dict[str, Any] | None = None
    references: dict[str, Any] | None = None
    has_nsfw_concepts: list[bool] | None = None
    timings: dict[str, Any] | None = None
    webhook: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status == RESULT_NAMES[JobState.SUCCEEDED]

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_RESULTS

    @property
    def images(self) -> list[str]:
        """The output image URLs (signed: fetch them without the API key)."""
        return list(self.output.images) if self.output else []

    @property
    def withheld(self) -> int:
        """How many generated images the content policy withheld (they have no URL)."""
        return sum(self.has_nsfw_concepts or [])


class Upload(_Model):
    """An uploaded file: `url` can be used in `image_urls` until `expires_at`."""

    url: str
    expires_at: datetime | None = None
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    # The server's field is `bytes`, which would shadow the type inside the class body.
    size: int | None = Field(default=None, alias="bytes")


class CancelOutcome(_AboutJob):
    """`outcome` is `cancelled`, or `not_cancellable` with the job's current `status`."""

    outcome: str

    @property
    def cancelled(self) -> bool:
        """The job is cancelled: by this call, or already (a repeated cancel, or a retry
        whose first attempt got through, may answer `not_cancellable` with `cancelled`)."""
        return self.outcome == "cancelled" or self.status == "cancelled"


class RequestSummary(_Timestamped):
    """One request of a list; `status` reads as on /result."""

    endpoint: str | None = None
    status_url: str | None = None
    result_url: str | None = None


class RequestList(_Model):
    """One page of a key's requests, newest first; `next_cursor` fetches the next page."""

    requests: list[RequestSummary] = Field(default_factory=list)
    next_cursor: str | None = None


class WebhookSecret(_Model):
    secret: str
