"""Job states (internal) and how each reads on the contract's /status and /result."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# /status: a finished job reads "completed" whether it succeeded or failed.
STATUS_NAMES: dict[JobState, str] = {
    JobState.QUEUED: "in_queue",
    JobState.RUNNING: "in_progress",
    JobState.SUCCEEDED: "completed",
    JobState.FAILED: "completed",
    JobState.CANCELLED: "cancelled",
}

# /result: the finished states are told apart.
RESULT_NAMES: dict[JobState, str] = {
    JobState.QUEUED: "in_queue",
    JobState.RUNNING: "in_progress",
    JobState.SUCCEEDED: "succeeded",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled",
}

# A job in one of these states never changes again.
FINISHED_STATES: frozenset[JobState] = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}
)
