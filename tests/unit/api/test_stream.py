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


# --- ?logs=1 on the stream ------------------------------------------------------------------


def started_by(lines: list[dict[str, Any]]) -> bool:
    return any(line["message"].startswith("started by") for line in lines)


def test_a_stream_with_logs_carries_the_lines_in_each_event(
    api: Api, server: InProcessServer
) -> None:
    """Read as the job runs: the status events carry the lines so far (a new line is a new
    event), and the result the same lines as the last status."""
    app = cast(FastAPI, server.transport.app.app)
    state: AppState = app.state.retouch
    own = dataclasses.replace(state, changes=ChangeFeed(state.store))
    key_id = server.services.keys.authenticate(api.key)
    assert key_id is not None
    body = {"image_urls": [f"data:image/png;base64,{SQUARE_PNG}"]}
    prompt, gate = server.engine.hold()

    async def follow(job_id: str) -> list[tuple[str, dict[str, Any]]]:
        events = stream.status_events(own, api.base, job_id, key_id, logs=True)
        try:
            async with asyncio.timeout(BOUND_SECONDS):
                first = await next_status(events)
                await asyncio.to_thread(gate.set)  # the job ahead ends: this one runs
                seen = [("status", first)]
                async for event in events:
                    name, data = event.decode().split("\n")[:2]
                    if name.startswith("event: "):
                        seen.append((name.removeprefix("event: "), json.loads(data[6:])))
                return seen
        finally:
            own.changes.close()

    try:
        ahead = api.submit_ok({**body, "prompt": prompt})
        api.wait_for_status(ahead, "in_progress")
        behind = api.submit_ok({**body, "prompt": "x"})
        events = asyncio.run(follow(behind))
    finally:
        gate.set()
    names = [name for name, _ in events]
    assert names[-1] == "result" and set(names[:-1]) == {"status"}
    statuses = [data for name, data in events if name == "status"]
    assert statuses[0]["status"] == "in_queue" and statuses[0]["logs"] == []
    assert all("logs" in status for status in statuses)
    assert started_by(statuses[-1]["logs"]) and statuses[-1]["status"] == "completed"
    assert events[-1][1]["status"] == "succeeded"
    assert events[-1][1]["logs"] == statuses[-1]["logs"]
    api.wait(ahead)


def test_a_stream_carries_logs_only_when_asked(api: Api) -> None:
    request_id = api.submit_ok(
        {"prompt": "x", "image_urls": [f"data:image/png;base64,{SQUARE_PNG}"]}
    )
    api.wait(request_id)
    polled = api.http.get(
        f"{api.base}/v1/requests/{request_id}/status", params={"logs": "1"}, headers=api.headers
    ).json()["logs"]
    for spelling in ("1", "true", "on"):
        events = api.events(request_id, logs=spelling)
        assert [name for name, _ in events] == ["status", "result"]
        assert all(data["logs"] == polled for _, data in events)
        assert started_by(polled)
    for params in ({}, {"logs": "0"}, {"logs": "false"}):
        events = api.events(request_id, **params)
        assert [name for name, _ in events] == ["status", "result"]
        assert all("logs" not in data for _, data in events)


def test_a_bad_logs_value_on_a_stream_is_refused_as_on_a_poll(api: Api) -> None:
    url = f"{api.base}/v1/requests/no-such-request/stream"
    refused = api.http.get(url, params={"logs": "maybe"}, headers=api.headers)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["path"] == ["query", "logs"]
    assert api.http.get(url, params={"logs": "maybe"}).status_code == 401
    assert api.http.get(url, params={"logs": "1"}, headers=api.headers).status_code == 404


def test_the_stream_declares_its_logs_parameter(server: InProcessServer) -> None:
    document = cast(FastAPI, server.transport.app.app).openapi()
    paths = document["paths"]
    stream_parameters = paths["/v1/requests/{request_id}/stream"]["get"]["parameters"]
    by_name = {(p["in"], p["name"]): p for p in stream_parameters}
    assert set(by_name) == {("path", "request_id"), ("query", "logs")}
    polled = {p["name"]: p for p in paths["/v1/requests/{request_id}/status"]["get"]["parameters"]}
    assert by_name["query", "logs"] == polled["logs"]
