"""Revoking a key stops its work: its requests answer 401, its queued jobs are cancelled
(with a log line saying why), its running one stops when cancel_running is on, its pending
webhooks are given up and no new ones are written, and its file URLs answer 403, within
the key cache's second; another key's work goes on."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest
from fastapi import FastAPI

from retouch.api import stream
from retouch.api.changes import ChangeFeed
from retouch.api.state import AppState
from retouch.contract.states import JobState
from webhook_receiver import QUICK_RETRIES, submit_with_webhook, webhook_receiver

from ..inprocess import SQUARE_PNG, InProcessServer, in_process_server

IMAGE = "data:image/png;base64," + SQUARE_PNG
BODY = {"prompt": "make it blue", "image_urls": [IMAGE]}


def eventually(check: Callable[[], bool], seconds: float = 2.0) -> None:
    """`check` holds within `seconds` (the revocation's promise)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time promised"
        time.sleep(0.05)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[InProcessServer]:
    with in_process_server(
        tmp_path / "data", cancel_running=True, fetch_allow=("127.0.0.1",), **QUICK_RETRIES
    ) as running:
        yield running


def test_revoking_a_key_ends_its_work(server: InProcessServer) -> None:
    keys = server.services.keys
    doomed = server.api(keys.create("doomed")[1])
    other = server.api(keys.create("other")[1])
    done = doomed.submit_ok(BODY)
    output_url = doomed.wait(done)["output"]["image"]
    assert doomed.http.get(output_url).status_code == 200
    upload = doomed.http.post(
        f"{doomed.base}/v1/files",
        files={"file": ("a.png", base64.b64decode(SQUARE_PNG), "image/png")},
        headers=doomed.headers,
    )
    assert upload.status_code == 200, upload.text
    upload_url = upload.json()["url"]
    with webhook_receiver() as receiver:
        receiver.answers = [500] * 1000  # its webhooks stay pending, retried
        hooked = submit_with_webhook(doomed, receiver.url, IMAGE)
        assert hooked.status_code == 200, hooked.text
        hooked_id = hooked.json()["request_id"]
        doomed.wait(hooked_id)
        receiver.wait_for(lambda got: len(got) >= 1)
        prompt, gate = server.engine.hold()
        running = doomed.submit_ok({**BODY, "prompt": prompt})
        doomed.wait_for_status(running, "in_progress")
        queued = [doomed.submit_ok(BODY) for _ in range(2)]
        others = other.submit_ok(BODY)

        [revoked] = server.services.revoke_key("doomed")
        assert revoked.revoked_at is not None
        try:
            store = server.services.store
            for request_id in queued:
                job = store.get(request_id, key_id=revoked.id)
                assert job is not None and job.state is JobState.CANCELLED
                assert any("revoked" in line.message for line in store.logs(request_id))
            eventually(lambda: doomed.status(done).status_code == 401)
            eventually(lambda: doomed.http.get(output_url).status_code == 403)
            assert "revoked" in doomed.http.get(output_url).json()["error_message"]
            eventually(lambda: doomed.http.get(upload_url).status_code == 403)
            # The running job stops at its next step, stores nothing.
            eventually(
                lambda: (
                    store.get(running, key_id=revoked.id).state  # type: ignore[union-attr]
                    is JobState.CANCELLED
                )
            )
            delivery = store.delivery(hooked_id)
            assert delivery is not None and delivery.state == "failed"
            attempts = len(receiver.received)
            time.sleep(0.5)  # retries were due every 0.2 s
            assert len(receiver.received) == attempts
        finally:
            gate.set()
        assert other.wait(others)["status"] == "succeeded"
    assert store.delivery(running) is None


def test_revocation_ends_the_keys_open_streams(tmp_path: Path) -> None:
    """Without cancel_running the key's running job goes on, but its stream ends (no result
    event) within 2 s of the revocation."""
    with in_process_server(tmp_path / "data") as server:
        app = cast(FastAPI, server.transport.app.app)
        state: AppState = app.state.retouch
        own = dataclasses.replace(state, changes=ChangeFeed(state.store))
        doomed = server.api(server.services.keys.create("doomed")[1])
        prompt, gate = server.engine.hold()
        running = doomed.submit_ok({**BODY, "prompt": prompt})
        doomed.wait_for_status(running, "in_progress")
        key_id = doomed.key.split("_")[1]

        async def follow() -> tuple[list[str], float]:
            events = stream.status_events(own, doomed.base, running, key_id)
            seen = [(await anext(events)).decode()]
            await asyncio.to_thread(server.services.revoke_key, "doomed")
            revoked_at = time.monotonic()
            async with asyncio.timeout(10):
                seen += [event.decode() async for event in events]
            return seen, time.monotonic() - revoked_at

        try:
            seen, took = asyncio.run(follow())
            own.changes.close()
            job = server.services.store.get(running, key_id=key_id)
            assert job is not None and job.state is JobState.RUNNING  # it goes on
        finally:
            gate.set()
        assert seen[0].startswith("event: status")
        assert not any(event.startswith("event: result") for event in seen)
        assert took <= 2.5
        eventually(lambda: store_state(server, running, key_id) is JobState.SUCCEEDED, seconds=10)


def store_state(server: InProcessServer, job_id: str, key_id: str) -> JobState | None:
    job = server.services.store.get(job_id, key_id=key_id)
    return None if job is None else job.state
