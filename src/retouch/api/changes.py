"""Wake-ups for requests that wait on a job (event streams, `Prefer: wait`): one poller per API
process watches the store's change marker and wakes every waiter at once, so a thousand open
streams cost one cheap read per tick, not a thousand."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from retouch.jobs.store import ChangeSource

log = logging.getLogger(__name__)

# A commit is noticed within this long: well under a status poll's round trip.
POLL_SECONDS = 0.01


class ChangeFeed:
    def __init__(self, store: ChangeSource, poll_seconds: float = POLL_SECONDS) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        self._changed: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def marker(self) -> asyncio.Event:
        """Take this before reading the job, then `wait` on it: a change that lands between
        the read and the wait still wakes the waiter (the event is already set)."""
        if self._task is None or self._task.done():
            # The baseline is read now, before the caller reads the job: a commit between the
            # two is then a change the poller sees, not part of its starting point.
            self._changed = asyncio.Event()
            baseline = self.store.change_token()
            self._task = asyncio.get_running_loop().create_task(
                self._poll(baseline), name="change-feed"
            )
        assert self._changed is not None
        return self._changed

    async def wait(self, marker: asyncio.Event, timeout: float) -> bool:
        """True when the database changed since `marker` was taken; False after timeout."""
        if timeout <= 0:
            return marker.is_set()
        try:
            async with asyncio.timeout(timeout):
                await marker.wait()
        except TimeoutError:
            return False
        return True

    async def _poll(self, token: int) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                latest = self.store.change_token()
            except Exception:  # a broken read must not leave every waiter asleep for good
                log.exception("change feed: reading the change marker failed")
                latest = token + 1  # wake everyone: each re-reads its job
            if latest != token:
                token = latest
                fired, self._changed = self._changed, asyncio.Event()
                assert fired is not None
                fired.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
