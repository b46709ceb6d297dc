"""Draining (`Worker.signalled`, what SIGTERM and SIGINT call in `retouch worker`): no more
claims; the running job finishes within drain_seconds or goes back to the queue without
counting its attempt, at once on a second signal; then run_forever returns. The real signals
and exit status: tests/e2e/test_drain.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..inprocess import SQUARE_PNG, InProcessServer, in_process_server

BODY = {"prompt": "x", "image_urls": ["data:image/png;base64," + SQUARE_PNG]}


def held_job(server: InProcessServer) -> tuple[str, Any]:
    prompt, gate = server.engine.hold()
    api = server.api()
    request_id = api.submit_ok({**BODY, "prompt": prompt})
    api.wait_for_status(request_id, "in_progress", timeout=10)
    return request_id, gate


def wait_stopped(server: InProcessServer, timeout: float) -> float:
    """Seconds until the worker's loop returned (its heartbeat row is gone then)."""
    started = time.monotonic()
    assert server.worker.exited.wait(timeout), "the worker did not stop"
    return time.monotonic() - started


def test_a_draining_worker_finishes_its_job_and_claims_no_other(tmp_path: Path) -> None:
    with in_process_server(tmp_path, drain_seconds=30) as server:
        api = server.api()
        request_id, gate = held_job(server)
        queued = api.submit_ok(BODY)
        server.worker.signalled()
        time.sleep(0.3)  # the drain has begun: a job that ends now is no reason to claim
        assert server.worker.stopping.is_set() and not server.worker.releasing.is_set()
        gate.set()
        wait_stopped(server, timeout=10)
        assert api.result(request_id).json()["status"] == "succeeded"
        assert api.status(queued).json()["status"] == "in_queue"
        assert server.services.store.workers(seen_within=60) == []


def test_past_drain_seconds_the_job_goes_back_to_the_queue(tmp_path: Path) -> None:
    with in_process_server(tmp_path, drain_seconds=0.3) as server:
        api = server.api()
        request_id, _ = held_job(server)
        server.worker.signalled()
        took = wait_stopped(server, timeout=10)
        assert 0.3 <= took < 3
        result = api.result(request_id).json()
        assert result["status"] == "in_queue"
        assert result["attempts"] == 0


def test_a_second_signal_puts_the_job_back_at_once(tmp_path: Path) -> None:
    with in_process_server(tmp_path, drain_seconds=60) as server:
        api = server.api()
        request_id, _ = held_job(server)
        server.worker.signalled()
        time.sleep(0.3)
        assert not server.worker.releasing.is_set()
        server.worker.signalled()
        wait_stopped(server, timeout=5)
        assert api.status(request_id).json()["status"] == "in_queue"


def test_an_idle_worker_stops_at_once(tmp_path: Path) -> None:
    with in_process_server(tmp_path, drain_seconds=60) as server:
        server.worker.signalled()
        assert wait_stopped(server, timeout=5) < 3
