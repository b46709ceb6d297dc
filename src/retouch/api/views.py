"""The contract's response bodies, built from a stored job."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from retouch.contract.states import FINISHED_STATES, RESULT_NAMES, STATUS_NAMES, JobState
from retouch.jobs.models import DeliveryRecord, Job, LogLine, WorkerRecord
from retouch.storage.signing import UrlSigner


def iso_utc(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Views:
    def __init__(self, signer: UrlSigner, url_ttl_seconds: int) -> None:
        self.signer = signer
        self.url_ttl_seconds = url_ttl_seconds

    @staticmethod
    def request_urls(base: str, job_id: str) -> dict[str, str]:
        root = f"{base}/v1/requests/{job_id}"
        return {
            "status_url": f"{root}/status",
            "result_url": f"{root}/result",
            "cancel_url": f"{root}/cancel",
        }

    def submitted(self, base: str, job: Job) -> dict[str, Any]:
        return {"request_id": job.id, **self.request_urls(base, job.id)}

    def status(self, base: str, job: Job) -> dict[str, Any]:
        urls = self.request_urls(base, job.id)
        body: dict[str, Any] = {"request_id": job.id, "status": STATUS_NAMES[job.state]}
        if job.state is JobState.QUEUED:
            body["queue_position"] = job.queue_position
        body["status_url"] = urls["status_url"]
        body["result_url"] = urls["result_url"]
        if job.state is JobState.RUNNING and job.progress_total:
            step = job.progress_step or 0
            body["progress"] = {
                "step": step,
                "total": job.progress_total,
                "fraction": round(step / job.progress_total, 4),
            }
        return body

    @staticmethod
    def logs(lines: list[LogLine]) -> list[dict[str, Any]]:
        return [
            {"time": iso_utc(line.at), "level": line.level, "message": line.message}
            for line in lines
        ]

    @staticmethod
    def workers(records: list[WorkerRecord]) -> list[dict[str, Any]]:
        return [
            {
                "id": record.id,
                "started_at": iso_utc(record.started_at),
                "last_seen": iso_utc(record.last_seen),
                **record.info,
            }
            for record in records
        ]

    def file_url(self, base: str, name: str) -> str:
        expires, signature = self.signer.sign(name, self.url_ttl_seconds)
        return f"{base}/v1/files/{name}?{urlencode({'expires': expires, 'sig': signature})}"

    @staticmethod
    def retry_after(job: Job) -> int | None:
        """Seconds a poller should wait before asking again; None once the job has finished.
        A queued job far back waits longer, up to 10 s."""
        if job.state in FINISHED_STATES:
            return None
        return min(1 + (job.queue_position or 0), 10)

    def listed(self, base: str, job: Job) -> dict[str, Any]:
        """One request in GET /v1/requests."""
        urls = self.request_urls(base, job.id)
        return {
            "request_id": job.id,
            "endpoint": job.endpoint,
            "status": RESULT_NAMES[job.state],
            "created_at": iso_utc(job.created_at),
            "started_at": iso_utc(job.started_at),
            "finished_at": iso_utc(job.finished_at),
            "status_url": urls["status_url"],
            "result_url": urls["result_url"],
        }

    @staticmethod
    def webhook(url: str, delivery: DeliveryRecord | None) -> dict[str, Any]:
        """A job's webhook as its result shows it: `waiting_for_job` until the job ends, then
        `pending` (retrying), `delivered` or `failed`, with every attempt."""
        if delivery is None:
            return {"url": url, "state": "waiting_for_job", "attempts": []}
        return {
            "url": delivery.url,
            "state": delivery.state,
            "next_attempt_at": iso_utc(delivery.next_attempt_at),
            "finished_at": iso_utc(delivery.finished_at),
            "attempts": [
                {
                    "at": iso_utc(attempt.at),
                    "status_code": attempt.status_code,
                    "error": attempt.error,
                    "duration_ms": round(attempt.duration_ms, 1),
                }
                for attempt in delivery.attempts
            ],
        }

    def result(self, base: str, job: Job) -> dict[str, Any]:
        body: dict[str, Any] = {"request_id": job.id, "status": RESULT_NAMES[job.state]}
        stored = job.result or {}
        if job.state is JobState.SUCCEEDED:
            urls = [self.file_url(base, item["file"]) for item in stored["outputs"]]
            output: dict[str, Any] = {"images": urls}
            if len(urls) == 1:
                output["image"] = urls[0]
            body["output"] = output
        if job.state is JobState.FAILED:
            body["error"] = {"code": job.error_code, "message": job.error_message}
        body["created_at"] = iso_utc(job.created_at)
        body["finished_at"] = iso_utc(job.finished_at)
        # Our additions live beside the contract's fields, never instead of them.
        body["started_at"] = iso_utc(job.started_at)
        body["attempts"] = job.attempts
        for extra in (
            "model",
            "warnings",
            "generation",
            "references",
            "has_nsfw_concepts",
            "timings",
        ):
            if extra in stored:
                body[extra] = stored[extra]
        return body
