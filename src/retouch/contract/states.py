"""Job states (internal) and how each reads on the contract's /status and /result."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

# The same names as types, for the response bodies (retouch.contract.bodies).
StatusName = Literal["in_queue", "in_progress", "completed", "cancelled"]
ResultStatusName = Literal["in_queue", "in_progress", "succeeded", "failed", "cancelled"]
CancelOutcomeName = Literal["cancelled", "not_cancellable"]


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# /status: a finished job reads "completed" whether it succeeded or failed.
STATUS_NAMES: dict[JobState, StatusName] = {
    JobState.QUEUED: "in_queue",
    JobState.RUNNING: "in_progress",
    JobState.SUCCEEDED: "completed",
    JobState.FAILED: "completed",
    JobState.CANCELLED: "cancelled",
}

# /result: the finished states are told apart.
RESULT_NAMES: dict[JobState, ResultStatusName] = {
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

# How a finished job reads on /status and on /result: a client stops waiting at one of these.
FINISHED_STATUSES: frozenset[str] = frozenset(STATUS_NAMES[state] for state in FINISHED_STATES)
FINISHED_RESULTS: frozenset[str] = frozenset(RESULT_NAMES[state] for state in FINISHED_STATES)
