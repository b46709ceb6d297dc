"""What a store's watch hands on (ChangeSource.watch_jobs), collected for a test to wait on.
A batch that never comes fails the test after a generous bound; nothing is timed."""

from __future__ import annotations

import queue
from collections.abc import Callable

from retouch.jobs.store import ChangeSource, JobChanges

BOUND_SECONDS = 30.0


class Heard:
    def __init__(self, store: ChangeSource) -> None:
        self._batches: queue.Queue[JobChanges] = queue.Queue()
        self.stop = store.watch_jobs(self._batches.put)
        # The watch's first batch: from here on every change is heard.
        self.until(lambda changes: changes.everything)

    def until(self, wanted: Callable[[JobChanges], bool]) -> list[JobChanges]:
        """The batches heard up to the first one `wanted`, that one last."""
        batches = [self._batches.get(timeout=BOUND_SECONDS)]
        while not wanted(batches[-1]):
            batches.append(self._batches.get(timeout=BOUND_SECONDS))
        return batches

    def job(self, job_id: str) -> JobChanges:
        """The next batch with this job in it."""
        return self.until(lambda changes: job_id in changes.job_ids)[-1]

    def by_id(self, job_id: str) -> bool:
        """Whether the next batch about this job names it; False when `everything` comes
        first (as while a watch recovers: a change before it reads again is heard so)."""
        batch = self.until(lambda changes: changes.everything or job_id in changes.job_ids)
        return job_id in batch[-1].job_ids
