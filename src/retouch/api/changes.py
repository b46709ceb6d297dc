"""Wake-ups for requests that wait on a job (event streams, `Prefer: wait`): one poller per API
process watches the store's change marker and wakes every waiter at once, so a thousand open
streams cost one cheap read per tick, not a thousand."""

from __future__ import annotations

import asyncio
import contextlib

from retouch.jobs.store import JobStore

# A commit is noticed within this long: well under a status poll's round trip.
POLL_SECONDS = 0.01


class ChangeFeed:
    def __init__(self, store: JobStore, poll_seconds: float = POLL_SECONDS) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        self._changed: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def marker(self) -> asyncio.Event:
        """Take this before reading the job, then `wait` on it: a change that lands between
        the read and the wait still wakes the waiter (the event is already set)."""
        if self._task is None:
            self._changed = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._poll(), name="change-feed")
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

    async def _poll(self) -> None:
        token = self.store.change_token()
        while True:
            await asyncio.sleep(self.poll_seconds)
            latest = self.store.change_token()
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
