"""Wake-ups for requests that wait on a job (event streams, `Prefer: wait`): the store's watcher
thread hands each batch of changed job ids to this process's ChangeFeed, which wakes the
waiters of those jobs only, on the event loop. No task polls anything; an idle stream costs
nothing until its job changes or its keep-alive is due.

Queue positions: a queued job's position changes when a job ahead of it leaves the queue
(claimed, cancelled) or a requeued one enters ahead of it, which touches no row of the jobs
that wait. The watcher says when the queue moved (retouch.jobs.changes.QueuedJobs); the feed
then wakes every waiter that shows a position, at most once per QUEUE_SECONDS: the first move
after a quiet second at once, any later ones in that second together at its end. A claim
thus costs each queued stream at most one re-read a second, however many claims there are,
and a position shown is at most about a second behind.

Stopping: on SIGTERM or SIGINT (uvicorn's signals, seen through a handler chained in front of
uvicorn's own) every feed of the process is `ending`: its waiters are woken and the streams
close after their current event, so uvicorn's graceful shutdown finds no request left to
cancel (the SDK reconnects to the next server and resumes).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import threading
import weakref
from collections.abc import Callable, Iterator
from types import FrameType

from retouch.jobs.store import ChangeSource, JobChanges

# Queue moves wake the waiters showing a position at most this often.
QUEUE_SECONDS = 1.0

# Every feed of this process, for end_streams.
_feeds: weakref.WeakSet[ChangeFeed] = weakref.WeakSet()


def end_streams() -> None:
    """The server is stopping: every feed of this process ends its streams and waits. Safe in
    a signal handler (it only schedules the wake-ups on each feed's loop)."""
    for feed in list(_feeds):
        feed.end()


def _end_streams_on_exit_signals() -> None:
    """Chains end_streams in front of the SIGTERM and SIGINT handlers in place (uvicorn's,
    which start its graceful shutdown). Main thread only; once per handler."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if not callable(previous) or getattr(previous, "ends_streams", False):
            continue  # not under a server (the default action), or chained already

        def handler(
            sig: int,
            frame: FrameType | None,
            previous: Callable[[int, FrameType | None], object] = previous,
        ) -> None:
            end_streams()
            previous(sig, frame)

        handler.ends_streams = True  # type: ignore[attr-defined]
        signal.signal(signum, handler)


class Follower:
    """One waiting request's wake-ups for its job: `mark()` before reading the job, then
    `wait()`. A change that lands between the read and the wait still ends the wait at once."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def mark(self) -> None:
        self._changed.clear()

    async def wait(self, timeout: float) -> bool:
        """True once the job changed since mark(); False after timeout."""
        if timeout <= 0:
            return self._changed.is_set()
        try:
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        except TimeoutError:
            return False
        return True

    def wake(self) -> None:
        self._changed.set()


class _Mailbox:
    """Batches heard on the watcher's thread, handed to one event loop: a single
    call_soon_threadsafe for however many arrive before the loop takes them."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, deliver: Callable[[JobChanges], None]
    ) -> None:
        self._loop = loop
        self._deliver = deliver
        self._lock = threading.Lock()
        self._pending: JobChanges | None = None

    def post(self, changes: JobChanges) -> None:
        with self._lock:
            pending = self._pending
            self._pending = changes if pending is None else pending | changes
        if pending is None:
            # A closed loop has no waiters left to wake.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._take)

    def _take(self) -> None:
        with self._lock:
            changes, self._pending = self._pending, None
        if changes is not None:
            self._deliver(changes)


class ChangeFeed:
    """The waiters of one API process, by job. Bound to the event loop of its first
    `follow`, where it starts watching the store."""

    def __init__(self, store: ChangeSource, queue_seconds: float = QUEUE_SECONDS) -> None:
        self.store = store
        self.queue_seconds = queue_seconds
        self._followers: dict[str, set[Follower]] = {}
        self._queue_followers: set[Follower] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_watching: Callable[[], None] | None = None
        self._queue_wake: asyncio.TimerHandle | None = None
        self._queue_woken_at = -math.inf
        # Set once the server is stopping: streams and waits end after their current read.
        self.ending = False
        _feeds.add(self)

    def end(self) -> None:
        """Ends every stream and wait of this feed (see end_streams)."""
        self.ending = True
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop has no waiters
                loop.call_soon_threadsafe(self._wake_all)

    def _wake_all(self) -> None:
        for followers in self._followers.values():
            for follower in followers:
                follower.wake()

    @contextlib.contextmanager
    def follow(self, job_id: str, *, queue_position: bool = False) -> Iterator[Follower]:
        """Wake-ups for this job while the block runs; with queue_position, also when the
        queue moves (see the module's docstring)."""
        self._watch()
        follower = Follower()
        self._followers.setdefault(job_id, set()).add(follower)
        if queue_position:
            self._queue_followers.add(follower)
        try:
            yield follower
        finally:
            followers = self._followers.get(job_id)
            if followers is not None:
                followers.discard(follower)
                if not followers:
                    del self._followers[job_id]
            self._queue_followers.discard(follower)

    def close(self) -> None:
        if self._stop_watching is not None:
            self._stop_watching()
            self._stop_watching = None
        if self._queue_wake is not None:
            self._queue_wake.cancel()
            self._queue_wake = None
        self._loop = None
        self._followers.clear()
        self._queue_followers.clear()

    def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self.close()  # watching for another loop: the app is served again (tests)
        self._loop = loop
        self._stop_watching = self.store.watch_jobs(_Mailbox(loop, self._deliver).post)
        if threading.current_thread() is threading.main_thread():
            # Served by uvicorn in this thread, whose signal handlers are in place by now.
            _end_streams_on_exit_signals()

    def _deliver(self, changes: JobChanges) -> None:
        if changes.everything:
            self._wake_all()
            return
        for job_id in changes.job_ids:
            for follower in self._followers.get(job_id, ()):
                follower.wake()
        if changes.queue_moved and self._queue_followers:
            self._queue_moved()

    def _queue_moved(self) -> None:
        if self._queue_wake is not None or self._loop is None:
            return  # a wake is already due: this move rides on it
        delay = self._queue_woken_at + self.queue_seconds - self._loop.time()
        if delay <= 0:
            self._wake_queue()
        else:
            self._queue_wake = self._loop.call_later(delay, self._wake_queue)

    def _wake_queue(self) -> None:
        assert self._loop is not None
        self._queue_wake = None
        self._queue_woken_at = self._loop.time()
        for follower in self._queue_followers:
            follower.wake()
