"""Every response body of the API, one pydantic model each: the API builds them
(retouch.responses), the SDK parses them (retouch.client), /openapi.json shows them.

A body is sent with `to_json`: only the fields that were set, so a field the contract leaves
out (`queue_position` of a running job, `output` of a failed one) stays out, and one set to
None reads null (`finished_at` of an unfinished job). Every model allows extra fields, so an
SDK reading a newer server's body keeps what it does not know (as attributes) instead of
failing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, overload

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

from retouch.contract.states import (
    FINISHED_RESULTS,
    FINISHED_STATUSES,
    RESULT_NAMES,
    CancelOutcomeName,
    JobState,
    ResultStatusName,
    StatusName,
)


def iso_utc(moment: datetime) -> str:
    """UTC with milliseconds and a Z: `2026-11-25T12:00:00.000Z`, as the contract writes it."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@overload
def from_timestamp(timestamp: float) -> datetime: ...
@overload
def from_timestamp(timestamp: None) -> None: ...
@overload
def from_timestamp(timestamp: float | None) -> datetime | None: ...
def from_timestamp(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


Timestamp = Annotated[
    datetime,
    PlainSerializer(iso_utc, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]


# A field sent as `bytes` (a size), which would shadow the type inside a class body: `size` in
# Python, `bytes` on the wire, either accepted when parsing.
BYTES_FIELD: Any = Field(
    default=None,
    validation_alias=AliasChoices("bytes", "size"),
    serialization_alias="bytes",
    description="Size in bytes",
)


class Body(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def to_json(self) -> bytes:
        return self.__pydantic_serializer__.to_json(self, exclude_unset=True, by_alias=True)


# --- following a request ----------------------------------------------------------------------


class Submission(Body):
    """The answer to a submit: the request id and where to follow it."""

    request_id: str
    # Always sent by Retouch; optional so that a client reading another server of the same
    # contract (or a proxy's trimmed answer) still gets the request id.
    status_url: str | None = None
    result_url: str | None = None
    cancel_url: str | None = None


class Progress(Body):
    """Denoising steps done of the total, while a job runs."""

    step: int
    total: int
    fraction: float = Field(description="step / total, rounded to 4 places")


class LogEntry(Body):
    """One line of a job's log (`?logs=1`)."""

    time: Timestamp
    level: str
    message: str


class Status(Body):
    """`in_queue` (with `queue_position`, 0 = next), `in_progress` (with `progress` once
    denoising starts), `completed` (succeeded or failed: see the result) or `cancelled`."""

    request_id: str
    status: StatusName
    queue_position: int | None = Field(
        default=None, description="Only while in_queue: jobs before it"
    )
    status_url: str | None = None
    result_url: str | None = None
    progress: Progress | None = Field(
        default=None, description="Only while in_progress, once known"
    )
    logs: list[LogEntry] | None = Field(default=None, description="Only with ?logs=1")

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES


class Output(Body):
    """The contract's output: every image URL, and `image` when there is exactly one. The URLs
    are signed and expire: fetch them without the API key."""

    images: list[str] = Field(default_factory=list)
    image: str | None = None


class JobError(Body):
    """Why a job failed: a stable snake_case code, and what went wrong with what to do."""

    code: str
    message: str


class ModelInfo(Body):
    """The engine and weights that ran (or would run) a job."""

    engine: str
    model: str
    preview: bool = Field(description="Tiny random weights: the output is noise, not an edit")
    device: str
    dtype: str


class Generation(Body):
    """The size asked for, the size the model generated at, and how one became the other."""

    aspect_ratio: str
    width: int
    height: int
    generated_width: int
    generated_height: int
    resize: str = Field(description="none, lanczos, or the upscaler's name")
    seeds: list[int]
    input_sizes: list[list[int]]


class ReferenceSheet(Body):
    """Inputs tiled onto one reference image, for engines that take fewer references."""

    reference: int
    inputs: list[int]
    grid: list[int]
    size: list[int]
    lead: int | None
    tiles: list[list[int]]


class References(Body):
    """How the inputs became the references the engine conditions on."""

    inputs: int
    references: int
    native: list[int]
    sheets: list[ReferenceSheet] = Field(default_factory=list)


class WebhookAttempt(Body):
    at: Timestamp
    status_code: int | None
    error: str | None
    duration_ms: float


class WebhookState(Body):
    """A job's webhook: `waiting_for_job` until the job ends, then `pending` (retrying),
    `delivered` or `failed`, with every attempt."""

    url: str
    state: str
    next_attempt_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    attempts: list[WebhookAttempt] = Field(default_factory=list)


class Result(Body):
    """`succeeded` (with `output`), `failed` (with `error`), `cancelled`, or still `in_queue` /
    `in_progress`. Beside the contract's fields: `started_at`, `attempts`, and for a job that
    ran, `model`, `warnings`, `generation`, `references`, `has_nsfw_concepts`, `timings`."""

    request_id: str
    status: ResultStatusName
    output: Output | None = Field(default=None, description="Only when succeeded")
    error: JobError | None = Field(default=None, description="Only when failed")
    created_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    started_at: Timestamp | None = None
    attempts: int | None = None
    model: ModelInfo | None = None
    warnings: list[str] = Field(default_factory=list)
    generation: Generation | None = None
    references: References | None = None
    has_nsfw_concepts: list[bool] | None = Field(
        default=None,
        description="Per generated image: withheld by the content policy (it has no URL)",
    )
    timings: dict[str, float] | None = Field(
        default=None, description="Seconds per stage of the job"
    )
    webhook: WebhookState | None = Field(
        default=None, description="Only for a submit with ?webhook="
    )
    logs: list[LogEntry] | None = Field(default=None, description="Only with ?logs=1")

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


class CancelOutcome(Body):
    """`outcome` is `cancelled`, or `not_cancellable` with the job's current `status`."""

    request_id: str
    status: StatusName
    outcome: CancelOutcomeName

    @property
    def cancelled(self) -> bool:
        """The job is cancelled: by this call, or already (a repeated cancel, or a retry
        whose first attempt got through, may answer `not_cancellable` with `cancelled`)."""
        return self.outcome == "cancelled" or self.status == "cancelled"


class RequestSummary(Body):
    """One request of a list; `status` reads as on /result."""

    request_id: str
    endpoint: str | None = None
    status: ResultStatusName
    created_at: Timestamp | None = None
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    status_url: str | None = None
    result_url: str | None = None


class RequestList(Body):
    """One page of a key's requests, newest first; `next_cursor` fetches the next page."""

    requests: list[RequestSummary] = Field(default_factory=list)
    next_cursor: str | None = None


class AdminRequest(RequestSummary):
    """One request of any key, as the admin queue view lists it."""

    key_id: str
    queue_position: int | None = Field(
        None, description="Queued jobs that run before this one in the fair order"
    )
    worker_id: str | None = None
    error_code: str | None = None


class KeyActivity(Body):
    """One key in the admin view: its role, its jobs by state, and what it keeps on storage."""

    key_id: str
    name: str | None = None
    role: Literal["user", "admin"] | None = None
    revoked: bool = False
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    output_bytes: int = Field(0, description="Bytes of its outputs not yet expired")
    upload_bytes: int = Field(0, description="Bytes of its uploads")


class AdminRequestList(Body):
    """GET /v1/admin/requests: every key's requests (filtered), newest first, and per-key
    counts over all of them."""

    requests: list[AdminRequest] = Field(default_factory=list)
    next_cursor: str | None = None
    keys: list[KeyActivity] = Field(default_factory=list)


class EndpointQueue(Body):
    """One endpoint in the operator's queue view: its unfinished jobs and the oldest waiting."""

    endpoint: str
    queued: int = 0
    running: int = 0
    oldest_queued_at: Timestamp | None = Field(
        None, description="When the oldest job still queued was submitted"
    )
    oldest_queued_request: str | None = Field(None, description="That job's request id")
    oldest_wait_seconds: float | None = Field(None, description="How long it has waited, to 0.1 s")


class FailureCount(Body):
    """Jobs failed in the window with one error code, and the newest of them."""

    code: str
    count: int
    last_at: Timestamp
    last_request: str
    last_message: str | None = None


class QueueOverview(Body):
    """GET /v1/admin/queue: every served endpoint's queue (and any other endpoint's with
    unfinished jobs), and the failures of the last `window_seconds` by code, most frequent
    first."""

    endpoints: list[EndpointQueue] = Field(default_factory=list)
    failures: list[FailureCount] = Field(default_factory=list)
    window_seconds: float
    failures_since: Timestamp


# --- the rest of the API ----------------------------------------------------------------------


class EngineFacts(Body):
    """What an engine kind is and can do, without loading it."""

    engine: str
    pipeline: str
    default_model: str
    license: str
    max_pixels: int
    size_multiple: int
    min_side: int
    max_references: int
    reference_pixels: int
    default_steps: int


class ServedModel(Body):
    """One endpoint this server serves; every one speaks the nano-banana-2/edit input."""

    id: str
    engine: str
    model: str = Field(description="A Hugging Face id, a local path, or preview")
    preview: bool
    supports: EngineFacts
    schema_url: str


class ModelList(Body):
    models: list[ServedModel]


class Upload(Body):
    """An uploaded file: `url` can be used in `image_urls` until `expires_at`."""

    url: str
    expires_at: Timestamp | None = None
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    size: int | None = BYTES_FIELD


class WebhookSecret(Body):
    """The `whsec_…` secret that signs this key's webhooks (Standard Webhooks)."""

    secret: str


class WorkerInfo(Body):
    """A worker alive now: what it serves, its engines, its memory."""

    id: str
    started_at: Timestamp
    last_seen: Timestamp
    endpoints: list[str] = Field(default_factory=list)
    engines: dict[str, ModelInfo] = Field(default_factory=dict)
    upscaler: str | None = None
    nsfw_classifier: str | None = None
    current_job: str | None = None
    memory: dict[str, float] = Field(default_factory=dict)


class WorkerList(Body):
    workers: list[WorkerInfo]


class Health(Body):
    """GET /healthz: the process answers."""

    status: Literal["ok"]


class ReadinessCheck(Body):
    """One dependency of GET /readyz."""

    ok: bool
    detail: str = Field(description="What answered, or why the check failed")


class Readiness(Body):
    """GET /readyz: every dependency answers (a failed one is a 503001 naming it)."""

    status: Literal["ready"]
    database: ReadinessCheck = Field(
        description="The job database answers, its schema at this version's revision"
    )
    storage: ReadinessCheck = Field(description="The file storage is reachable")


class InputSchema(Body):
    """An endpoint's input as a JSON Schema (draft 2020-12) object schema: every field with its
    title, description, default, enum and bounds."""

    title: str
    description: str | None = None
    type: str = "object"
    properties: dict[str, dict[str, Any]]
    required: list[str] = Field(default_factory=list)
    additionalProperties: bool = False
