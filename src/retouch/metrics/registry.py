"""Every metric the processes of Retouch count, defined once, named `retouch_…`.

A metric is counted in the process where its event happens: requests in the API process that
answers them, job outcomes and stage durations in the worker that ends the job, webhook
attempts in the API process whose dispatcher sent them. Under `retouch serve` every process
of the host writes its values to files in one folder (prometheus_client's multiprocess mode,
`multiprocess.py`), so `/metrics` on any API process shows them all. What the job database
knows (queue depth, running jobs, workers) is read at scrape time instead
(`collectors.py`): it is the same whichever process answers.

All metrics here have labels, so no value exists before its first `.labels()`: which is what
lets `multiprocess.enable` switch the value class after this module was imported."""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram

# Ours alone (not prometheus_client's global REGISTRY, which carries the process and platform
# collectors that mean nothing summed over processes).
REGISTRY: Final = CollectorRegistry(auto_describe=True)

# From a cached status poll (a millisecond) to a long wait or event stream.
HTTP_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# From a moderation pass (milliseconds) to a large engine run (minutes).
STAGE_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

HTTP_REQUESTS: Final = Counter(
    "retouch_http_requests",
    "HTTP requests answered, by route template (`/v1/requests/{request_id}/status`; "
    "`unmatched` for unknown paths), method and status",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_DURATION: Final = Histogram(
    "retouch_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by route template and method "
    "(an event stream or a `Prefer: wait` counts the whole wait)",
    ["route", "method"],
    buckets=HTTP_BUCKETS,
    registry=REGISTRY,
)
JOBS_FINISHED: Final = Counter(
    "retouch_jobs_finished",
    "Jobs ended by a worker, by endpoint, outcome (succeeded, failed) and failure code "
    "(empty for a success; worker_lost for one the reaper gave up, its endpoint empty)",
    ["endpoint", "outcome", "code"],
    registry=REGISTRY,
)
JOB_STAGE_DURATION: Final = Histogram(
    "retouch_job_stage_duration_seconds",
    "Time a succeeded job spent in each stage: fetch (download and decode the inputs), "
    "moderation (inputs and outputs), engine, resize, encode, store, and job (the whole run)",
    ["endpoint", "stage"],
    buckets=STAGE_BUCKETS,
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES: Final = Counter(
    "retouch_webhook_deliveries",
    "Webhook delivery attempts recorded, by outcome: delivered, retrying (failed, tried "
    "again later) or failed (for good)",
    ["outcome"],
    registry=REGISTRY,
)
RATE_LIMITED: Final = Counter(
    "retouch_rate_limited",
    "Submits refused by a per-key limit (429001), by limit: queued (jobs in the queue) or "
    "rate (submits per minute)",
    ["limit"],
    registry=REGISTRY,
)

# The stages of a job's `timings` (worker/edit_job.py) and the histogram's stage they add to.
STAGES: Final = {
    "inputs_s": "fetch",
    "input_moderation_s": "moderation",
    "engine_s": "engine",
    "output_moderation_s": "moderation",
    "resize_s": "resize",
    "encode_s": "encode",
    "store_s": "store",
    "job_s": "job",
}


def job_succeeded(endpoint: str, timings: dict[str, float]) -> None:
    """A job completed (its result recorded): its outcome and its final timings."""
    JOBS_FINISHED.labels(endpoint=endpoint, outcome="succeeded", code="").inc()
    stages: dict[str, float] = {}
    for timing, stage in STAGES.items():
        if timing in timings:
            stages[stage] = stages.get(stage, 0.0) + timings[timing]
    for stage, seconds in stages.items():
        JOB_STAGE_DURATION.labels(endpoint=endpoint, stage=stage).observe(seconds)


def job_failed(endpoint: str, code: str) -> None:
    JOBS_FINISHED.labels(endpoint=endpoint, outcome="failed", code=code).inc()


def job_cancelled(endpoint: str) -> None:
    """A job cancelled (by its client, an admin, or its key's revocation)."""
    JOBS_FINISHED.labels(endpoint=endpoint, outcome="cancelled", code="").inc()
