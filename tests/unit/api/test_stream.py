"""The event stream of a queued job follows its queue position as jobs ahead leave the queue,
though nothing writes to its own row (see retouch.api.changes)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any, cast

import pytest
from fastapi import FastAPI
from sqlalchemy.exc import OperationalError

from e2e_support import Api
from retouch.api import stream
from retouch.api.changes import ChangeFeed
from retouch.api.state import AppState

from ..inprocess import SQUARE_PNG, InProcessServer

BOUND_SECONDS = 30.0


async def next_status(events: Any) -> dict[str, Any]:
    """The next `status` event's body (keep-alive comments skipped)."""
    while True:
        event = (await anext(events)).decode()
        if event.startswith("event: status\n"):
            data = event.split("\n")[1].removeprefix("data: ")
            return cast(dict[str, Any], json.loads(data))


def test_a_queued_jobs_stream_follows_its_position(
    api: Api, server: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No keep-alive re-read in this test: only the queue's move can bring the new position.
    monkeypatch.setattr(stream, "KEEPALIVE_SECONDS", 3600.0)
    app = cast(FastAPI, server.transport.app.app)
    state: AppState = app.state.retouch
    # A feed of its own, on this test's event loop (the app's serves the server's loop).
    own = dataclasses.replace(state, changes=ChangeFeed(state.store))
    key_id = server.services.keys.authenticate(api.key)
    assert key_id is not None
    body = {"prompt": "x", "image_urls": [f"data:image/png;base64,{SQUARE_PNG}"]}

    async def follow(ahead: str, behind: str, sentinel: str) -> list[dict[str, Any]]:
        events = stream.status_events(own, api.base, behind, key_id)
        try:
            async with asyncio.timeout(BOUND_SECONDS):
                # Once the sentinel's change is heard, the watch is in place: the
                # `everything` it starts with (if it is the store's first) has come.
                with own.changes.follow(sentinel) as warm:
                    warm.mark()
                    await asyncio.to_thread(api.cancel, sentinel)
                    assert await warm.wait(BOUND_SECONDS)
                first = await next_status(events)
                await asyncio.to_thread(api.cancel, ahead)
                return [first, await next_status(events)]
        finally:
            own.changes.close()

    with server.held_job(api):
        ahead, behind, sentinel = (api.submit_ok(body) for _ in range(3))
        statuses = asyncio.run(follow(ahead, behind, sentinel))
    assert [(s["status"], s["queue_position"]) for s in statuses] == [
        ("in_queue", 1),
        ("in_queue", 0),
    ]
    assert api.wait(behind)["status"] == "succeeded"


class FlakyStore:
    """The server's store, whose next `failures` reads of a job fail as a lost connection."""

    def __init__(self, store: Any, failures: int) -> None:
        self._store = store
        self.failures = failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise OperationalError("SELECT …", {}, Exception("server closed the connection"))
        return self._store.get(*args, **kwargs)


def flaky_state(server: InProcessServer, failures: int) -> tuple[AppState, FlakyStore]:
    app = cast(FastAPI, server.transport.app.app)
    state: AppState = app.state.retouch
    flaky = FlakyStore(state.store, failures)
    return dataclasses.replace(state, store=flaky, changes=ChangeFeed(state.store)), flaky  # type: ignore[arg-type]


def test_a_stream_rides_out_a_database_that_stops_answering(
    api: Api, server: InProcessServer
) -> None:
    """Once started, a stream cannot answer 503: it says it waits, and reads again."""
    state, flaky = flaky_state(server, failures=2)
    key_id = server.services.keys.authenticate(api.key)
    assert key_id is not None
    body = {"prompt": "x", "image_urls": [f"data:image/png;base64,{SQUARE_PNG}"]}

    async def follow(job_id: str) -> list[str]:
        events = stream.status_events(state, api.base, job_id, key_id)
        seen: list[str] = []
        try:
            async with asyncio.timeout(BOUND_SECONDS):
                while not seen or not seen[-1].startswith("event: status"):
                    seen.append((await anext(events)).decode())
                await asyncio.to_thread(api.cancel, job_id)
                seen.extend([event.decode() async for event in events])
        finally:
            state.changes.close()
        return seen

    with server.held_job(api):
        api.submit_ok(body)  # the held one
        job_id = api.submit_ok(body)
        seen = asyncio.run(follow(job_id))
    kinds = [event.split("\n")[0] for event in seen]
    assert kinds[:2] == [": waiting for the job database"] * 2
    assert kinds[2:] == ["event: status", "event: status", "event: result"]
    assert flaky.failures == 0


def test_prefer_wait_ends_its_wait_when_the_database_stops_answering(
    api: Api, server: InProcessServer
) -> None:
    """The job was stored: the submit answers its Submission, not a 503 that a client might
    take for a failed submit and send again."""
    state, _ = flaky_state(server, failures=1)
    key_id = server.services.keys.authenticate(api.key)
    assert key_id is not None
    body = {"prompt": "x", "image_urls": [f"data:image/png;base64,{SQUARE_PNG}"]}

    async def wait(job_id: str) -> object:
        try:
            return await stream.wait_for_end(state, job_id, key_id, BOUND_SECONDS)
        finally:
            state.changes.close()

    with server.held_job(api):
        job_id = api.submit_ok(body)
        assert asyncio.run(wait(job_id)) is None
