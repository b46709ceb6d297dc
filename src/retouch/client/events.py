"""What `iter_events()` yields while a request runs: `Queued`, `InProgress`, then one
`Completed`, each with the log lines that are new since the event before (with_logs=True)."""

from __future__ import annotations

from dataclasses import dataclass, field

from retouch.client.models import LogEntry, Progress, Result, Status


@dataclass(frozen=True)
class Queued:
    """Waiting in the queue: `position` jobs start before it (0: it is next)."""

    status: Status
    logs: list[LogEntry] = field(default_factory=list)

    @property
    def position(self) -> int | None:
        return self.status.queue_position


@dataclass(frozen=True)
class InProgress:
    """Running: `progress` counts the denoising steps once they start (None before)."""

    status: Status
    logs: list[LogEntry] = field(default_factory=list)

    @property
    def progress(self) -> Progress | None:
        return self.status.progress


@dataclass(frozen=True)
class Completed:
    """Finished, whatever the outcome: `result.ok` says whether it succeeded (`result.error`
    why not, `result.status` is `failed` or `cancelled` then). Always the last event."""

    result: Result
    logs: list[LogEntry] = field(default_factory=list)


Event = Queued | InProgress | Completed


class EventTracker:
    """Turns the statuses a wait sees into events, each carrying only the log lines it has
    not handed out yet (the server sends every line so far each time)."""

    def __init__(self) -> None:
        self._logs_seen = 0

    def _new_logs(self, logs: list[LogEntry] | None) -> list[LogEntry]:
        fresh = (logs or [])[self._logs_seen :]
        self._logs_seen += len(fresh)
        return fresh

    def for_status(self, status: Status) -> Queued | InProgress | None:
        """The event of a status; None for a finished one (`Completed` comes with the result)."""
        if status.finished:
            return None
        logs = self._new_logs(status.logs)
        return Queued(status, logs) if status.status == "in_queue" else InProgress(status, logs)

    def for_result(self, result: Result) -> Completed:
        return Completed(result, self._new_logs(result.logs))
