"""Graceful drain: SIGTERM (or SIGINT) to `retouch worker` stops its claims, lets the running
job finish within RETOUCH_DRAIN_SECONDS or puts it back in the queue, and exits 0; SIGTERM or
SIGINT to `retouch serve` with an event stream open ends the stream, drains the worker
without restarting it and exits 0, with no traceback."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from e2e_support import Api, ImageServer, RetouchProcess, server_env


def slow_job(api: Api, image_server: ImageServer, seconds: float) -> str:
    """A job whose input takes `seconds` to download (a stopping worker stops the download)."""
    url = image_server.url(f"/slow.png?seconds={seconds}")
    return api.submit_ok({"prompt": "x", "image_urls": [url], "resolution": "0.5K"})


@contextmanager
def api_only(data_dir: Path, env: dict[str, str]) -> Iterator[Api]:
    server = RetouchProcess(data_dir, env).serve("--no-worker")
    try:
        yield Api(server.base, server.read_first_key())
    finally:
        server.stop()


def start_worker(data_dir: Path, env: dict[str, str]) -> RetouchProcess:
    worker = RetouchProcess(data_dir, env)
    worker.process = worker._spawn(["worker"], "worker")
    return worker


def exit_code(process: RetouchProcess, timeout: float) -> tuple[int, float]:
    """The exit status, and how long after now it came."""
    assert process.process is not None
    started = time.monotonic()
    try:
        code = process.process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.process.kill()
        process.process.wait()
        raise AssertionError(f"did not exit within {timeout} s:\n{process.log_text()}") from None
    return code, time.monotonic() - started


# On SQLite only: the job ends as any does; putting one back is the next two tests'.
@pytest.mark.sqlite_only
def test_a_worker_sigtermed_mid_job_finishes_it_and_exits_0(
    data_dir: Path, image_server: ImageServer
) -> None:
    env = server_env()
    with api_only(data_dir, env) as api:
        request_id = slow_job(api, image_server, 3)
        worker = start_worker(data_dir, env)
        try:
            api.wait_for_status(request_id, "in_progress", timeout=90)
            assert worker.process is not None
            worker.process.send_signal(signal.SIGTERM)
            code, _ = exit_code(worker, timeout=60)
        finally:
            worker.stop(signal.SIGKILL)
        log = worker.log_text()
        assert code == 0, log
        assert f"draining: finishing job {request_id} (up to 60 s)" in log
        assert "Traceback" not in log
        result = api.result(request_id).json()
        assert result["status"] == "succeeded", result
        assert result["attempts"] == 1
        # Its heartbeat row went with it.
        workers = api.http.get(f"{api.base}/v1/workers", headers=api.headers).json()
        assert workers["workers"] == [], workers


def test_past_the_drain_time_the_job_goes_back_to_the_queue_and_the_worker_exits_0(
    data_dir: Path, image_server: ImageServer
) -> None:
    env = server_env(RETOUCH_DRAIN_SECONDS="1")
    with api_only(data_dir, env) as api:
        request_id = slow_job(api, image_server, 6)
        worker = start_worker(data_dir, env)
        try:
            api.wait_for_status(request_id, "in_progress", timeout=90)
            assert worker.process is not None
            worker.process.send_signal(signal.SIGTERM)
            code, took = exit_code(worker, timeout=20)
        finally:
            worker.stop(signal.SIGKILL)
        log = worker.log_text()
        assert code == 0, log
        assert took < 6, (took, log)  # the drain's second, not the 6 s download
        assert "still running after 1 s" in log
        assert "put back in the queue (worker stopping)" in log
        assert api.status(request_id).json()["status"] == "in_queue"

        # Another worker takes it; the released attempt was not counted.
        second = start_worker(data_dir, env)
        try:
            result = api.wait(request_id, timeout=90)
        finally:
            second.stop()
        assert result["status"] == "succeeded", result
        assert result["attempts"] == 1


def test_a_second_signal_puts_the_job_back_at_once(
    data_dir: Path, image_server: ImageServer
) -> None:
    env = server_env()  # a drain of 60 s: only the second signal ends it early
    with api_only(data_dir, env) as api:
        request_id = slow_job(api, image_server, 30)
        worker = start_worker(data_dir, env)
        try:
            api.wait_for_status(request_id, "in_progress", timeout=90)
            assert worker.process is not None
            worker.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while "draining: finishing job" not in worker.log_text():
                assert time.monotonic() < deadline, worker.log_text()
                time.sleep(0.05)
            worker.process.send_signal(signal.SIGINT)
            code, took = exit_code(worker, timeout=20)
        finally:
            worker.stop(signal.SIGKILL)
        log = worker.log_text()
        assert code == 0, log
        assert took < 10, (took, log)
        assert f"second stop signal: job {request_id} goes back to the queue" in log
        assert api.status(request_id).json()["status"] == "in_queue"


class EventStream:
    """An open event stream of one job, read in a thread: the events seen and how it ended."""

    def __init__(self, api: Api, request_id: str) -> None:
        self.events: list[str] = []
        self.ended_cleanly: bool | None = None
        self.opened = threading.Event()  # set at the first event
        url = f"{api.base}/v1/requests/{request_id}/stream"
        self._thread = threading.Thread(target=self._read, args=(url, api.headers), daemon=True)
        self._thread.start()
        assert self.opened.wait(30), "no event came"

    def _read(self, url: str, headers: dict[str, str]) -> None:
        try:
            with httpx.stream("GET", url, headers=headers, timeout=60) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        self.events.append(line.removeprefix("event:").strip())
                        self.opened.set()  # the stream follows its job by now
            self.ended_cleanly = True
        except httpx.HTTPError:
            self.ended_cleanly = False

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the stream is still open"


# Two of the four combinations (each signal, each shape of serve), the second on SQLite
# only: what differs between the stores is covered by the first.
@pytest.mark.parametrize(
    ("sig", "api_processes"),
    [(signal.SIGTERM, "2"), (signal.SIGINT, "1")],
    ids=["SIGTERM-2-processes", "SIGINT-1-process"],
)
def test_serve_with_an_open_stream_ends_it_drains_its_worker_and_exits_0(
    data_dir: Path, image_server: ImageServer, sig: int, api_processes: str, backend: str
) -> None:
    if sig == signal.SIGINT and backend == "postgresql":
        pytest.skip("the store plays no part in how serve takes SIGINT: run on SQLite")
    server = RetouchProcess(data_dir, server_env()).serve("--api-processes", api_processes)
    try:
        api = Api(server.base, server.read_first_key())
        # Longer than uvicorn's graceful shutdown (5 s), which would cancel the stream.
        request_id = slow_job(api, image_server, 6)
        api.wait_for_status(request_id, "in_progress", timeout=90)
        stream = EventStream(api, request_id)
        assert server.process is not None
        server.process.send_signal(sig)
        # The stream ends at once, long before its job.
        stream.join(3)
        code, _ = exit_code(server, timeout=60)
    finally:
        server.stop(signal.SIGKILL)
    log = server.log_text()
    assert code == 0, log
    assert "Traceback" not in log and "CancelledError" not in log, log
    assert stream.ended_cleanly, log
    assert stream.events == ["status"]
    # The worker was not restarted: it drained, finishing the job before serve exited.
    assert "restarting" not in log and log.count(" ready for ") == 1, log
    assert f"draining: finishing job {request_id}" in log
    assert f"job {request_id}: succeeded" in log
