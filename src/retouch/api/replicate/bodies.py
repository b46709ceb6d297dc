"""Replicate's prediction object (and its list page) built from stored jobs."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Literal

from pydantic import Field

from retouch.api.replicate.inputs import replicate_input
from retouch.api.state import AppState
from retouch.contract.bodies import Body, LogEntry, Timestamp, from_timestamp
from retouch.contract.states import JobState
from retouch.jobs.models import Job
from retouch.responses import log_entries, stored_result
from retouch.served_endpoints import Endpoint

PREFIX = "/replicate"
SURFACE = "replicate"
PredictionStatus = Literal["starting", "processing", "succeeded", "failed", "canceled"]
STATUSES: dict[JobState, PredictionStatus] = {
    JobState.QUEUED: "starting",
    JobState.RUNNING: "processing",
    JobState.SUCCEEDED: "succeeded",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "canceled",
}
# Replicate's webhook events; this server sends `completed` only (see the README).
WEBHOOK_EVENTS = ("start", "output", "logs", "completed")


class Prediction(Body):
    id: str
    model: str
    version: str
    input: dict[str, Any] | None = None
    output: str | list[str] | None = None
    error: str | None = None
    status: PredictionStatus
    logs: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    created_at: Timestamp | None = None
    started_at: Timestamp | None = None
    completed_at: Timestamp | None = None
    urls: dict[str, str]
    data_removed: bool = False
    source: Literal["api"] = "api"
    # Beside Replicate's fields, as the contract's result has them.
    warnings: list[str] = Field(default_factory=list)


class PredictionPage(Body):
    results: list[Prediction]
    next: str | None = None
    previous: str | None = None


class SigningSecret(Body):
    key: str


def model_id(state: AppState, job: Job) -> str:
    served = state.endpoints.get(job.endpoint)
    return served.replicate_id if served is not None else job.endpoint


def endpoint_version(endpoint: Endpoint) -> str:
    """A stable 64-hex id of an endpoint and the engine and weights serving it (Replicate's
    versions are such ids): new weights, a new version; two endpoints, two versions."""
    served = f"{endpoint.id}:{endpoint.engine}:{endpoint.model or 'preview'}"
    return hashlib.sha256(served.encode()).hexdigest()


def version_id(state: AppState, job: Job) -> str:
    served = state.endpoints.get(job.endpoint)
    return endpoint_version(served) if served else hashlib.sha256(job.endpoint.encode()).hexdigest()


def prediction_urls(base: str, job_id: str) -> dict[str, str]:
    root = f"{base}{PREFIX}/v1/predictions/{job_id}"
    return {"get": root, "cancel": f"{root}/cancel", "stream": f"{root}/stream"}


def prediction(
    state: AppState,
    base: str,
    job: Job,
    lines: list[LogEntry] | None,
    *,
    waited_out: bool = False,
) -> Prediction:
    """The job as a prediction: `input` when the job was read with it, `logs` its lines.
    `waited_out`: the answer to a `Prefer: wait` that ended before the job did, which reads
    `starting` whatever the job's state (the `replicate` client waits on for that status
    only; for any other it takes the answer as final)."""
    fields: dict[str, Any] = {
        "id": job.id,
        "model": model_id(state, job),
        "version": version_id(state, job),
        "status": "starting" if waited_out else STATUSES[job.state],
        "urls": prediction_urls(base, job.id),
        "created_at": from_timestamp(job.created_at),
        "started_at": from_timestamp(job.started_at),
        "completed_at": from_timestamp(job.finished_at),
        "logs": "\n".join(line.message for line in lines or []),
        "output": None,
        "error": None,
        "metrics": {},
        "data_removed": job.expired_at is not None,
        "source": "api",
    }
    if job.input is not None:
        fields["input"] = replicate_input(job.input)
    if job.started_at is not None and job.finished_at is not None:
        fields["metrics"] = {"predict_time": round(job.finished_at - job.started_at, 3)}
    if job.state is JobState.FAILED:
        fields["error"] = f"{job.error_message} ({job.error_code})"
    stored = stored_result(job)
    if job.state is JobState.SUCCEEDED and stored is not None:
        urls = [file.url for file in state.responses.output_files(base, job)]
        asked = len(stored.generation.seeds) if stored.generation else len(urls)
        # One URI, as the hosted model answers; a list when more images were asked for.
        fields["output"] = urls if asked > 1 else (urls[0] if urls else None)
        fields["warnings"] = stored.warnings
    return Prediction(**fields)


def current(state: AppState, base: str, job: Job, *, waited_out: bool = False) -> Prediction:
    """The prediction of a job with its logs read now, and its input unless the job holds
    it (also the webhook's body). Blocking."""
    if job.input is None:
        job = dataclasses.replace(job, input=state.store.input_of(job.id, key_id=job.key_id))
    lines = log_entries(state.store.logs(job.id))
    return prediction(state, base, job, lines, waited_out=waited_out)
