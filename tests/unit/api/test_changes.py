"""The API's ChangeFeed: each waiter wakes for its own job, queue moves wake the waiters that
show a position (coalesced), and `everything` wakes them all. On a fake change source (its
batches sent from another thread, as a store's watcher sends them) and on real stores."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from retouch.api.changes import ChangeFeed
from retouch.jobs.sql_store import SqlJobStore
from retouch.jobs.store import JobChanges

BOUND_SECONDS = 30.0


class FakeSource:
    """A ChangeSource whose watch hears what the test sends."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[JobChanges], None]] = []

    def change_token(self) -> int:
        return 0

    def wait_for_change(self, timeout: float, *, since: int | None = None) -> bool:
        return False

    def watch_jobs(self, callback: Callable[[JobChanges], None]) -> Callable[[], None]:
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    async def send(self, *job_ids: str, **flags: bool) -> None:
        changes = JobChanges(frozenset(job_ids), **flags)
        await asyncio.to_thread(lambda: [callback(changes) for callback in self.callbacks])


def run(scenario: Callable[[FakeSource], Any]) -> None:
    asyncio.run(scenario(FakeSource()))


def test_a_waiter_wakes_for_its_own_job_only() -> None:
    async def scenario(source: FakeSource) -> None:
        feed = ChangeFeed(source)
        with feed.follow("a") as a, feed.follow("b") as b, feed.follow("b") as also_b:
            a.mark()
            b.mark()
            also_b.mark()
            await source.send("b")
            assert await b.wait(BOUND_SECONDS) and await also_b.wait(0)
            assert not await a.wait(0)
            # Marked before the change, waited on after it: the wait ends at once.
            a.mark()
            await source.send("a")
            assert await a.wait(BOUND_SECONDS)
        feed.close()
        assert source.callbacks == []

    run(scenario)


def test_everything_wakes_every_waiter() -> None:
    async def scenario(source: FakeSource) -> None:
        feed = ChangeFeed(source)
        with feed.follow("a") as a, feed.follow("b", queue_position=True) as b:
            a.mark()
            b.mark()
            await source.send(everything=True)
            assert await a.wait(BOUND_SECONDS) and await b.wait(BOUND_SECONDS)
        feed.close()

    run(scenario)


def test_queue_moves_wake_the_waiters_showing_a_position_once_per_interval() -> None:
    async def scenario(source: FakeSource) -> None:
        feed = ChangeFeed(source, queue_seconds=3600)
        with (
            feed.follow("queued", queue_position=True) as queued,
            feed.follow("waiting") as waiting,
            feed.follow("sentinel") as sentinel,
        ):
            for follower in (queued, waiting, sentinel):
                follower.mark()
            # The first move after a quiet interval wakes them at once (in the same
            # delivery as the sentinel's own change).
            await source.send("sentinel", queue_moved=True)
            assert await sentinel.wait(BOUND_SECONDS)
            assert await queued.wait(0)
            assert not await waiting.wait(0)  # it shows no position: a queue move is not its
            # The next, within the interval, waits for its end (an hour here).
            queued.mark()
            sentinel.mark()
            await source.send("sentinel", queue_moved=True)
            assert await sentinel.wait(BOUND_SECONDS)
            assert not await queued.wait(0)
        feed.close()

    run(scenario)


def test_a_queue_move_within_the_interval_comes_at_its_end() -> None:
    async def scenario(source: FakeSource) -> None:
        feed = ChangeFeed(source, queue_seconds=0.05)
        with feed.follow("queued", queue_position=True) as queued:
            for _ in range(3):
                queued.mark()
                await source.send(queue_moved=True)
                assert await queued.wait(BOUND_SECONDS)
        feed.close()

    run(scenario)


def test_many_waiters_on_a_store_wake_for_their_own_jobs(store: SqlJobStore) -> None:
    jobs = [
        store.submit(key_id="k", endpoint="e", input={}, max_queued=1000).id for _ in range(300)
    ]
    changed = jobs[::7]

    async def scenario() -> None:
        feed = ChangeFeed(store)
        with contextlib.ExitStack() as stack:
            followers = {job_id: stack.enter_context(feed.follow(job_id)) for job_id in jobs}
            # The watch's first batch, `everything`: it is in place.
            for follower in followers.values():
                assert await follower.wait(BOUND_SECONDS)
                follower.mark()
            await asyncio.to_thread(lambda: [store.cancel(job, key_id="k") for job in changed])
            # Heard in commit order: once the last is woken, all the changes were delivered.
            for job_id in changed:
                assert await followers[job_id].wait(BOUND_SECONDS)
            unchanged = [followers[job_id] for job_id in jobs if job_id not in changed]
            assert [await follower.wait(0) for follower in unchanged] == [False] * len(unchanged)
        feed.close()

    asyncio.run(scenario())
