"""GET /metrics over real HTTP: `retouch serve --api-processes 2` shows the counters of all its
processes (the worker child's job outcomes and stages, either API process's requests) on
whichever API process answers (prometheus_client's multiprocess mode, in <data dir>/metrics);
and a standalone `retouch worker --metrics-port` serves its own, beside a one-process
`serve --no-worker`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from e2e_support import Api, ImageServer, RetouchProcess, free_port, server_env, with_database
from unit.metrics.metrics_support import Scrape, scrape

# On SQLite only: the collectors' reads run on both stores in tests/unit/metrics/.
pytestmark = pytest.mark.sqlite_only

EDIT = "google/nano-banana-2/edit"
FINISHED = "retouch_jobs_finished_total"
SUBMIT_ROUTE = "/v1/models/{owner_name}/{model_name}/{task}"


def fresh_scrape(base: str) -> Scrape:
    # A new connection each time, so the scrapes are spread over the API processes.
    with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as http:
        return scrape(http, base)


def finished_once(base: str, timeout: float = 30) -> Scrape:
    """The first scrape that shows one succeeded job."""
    deadline = time.monotonic() + timeout
    while True:
        scraped = fresh_scrape(base)
        if scraped.value(FINISHED, endpoint=EDIT, outcome="succeeded", code="") == 1:
            return scraped
        assert time.monotonic() < deadline, scraped
        time.sleep(0.1)


def test_serve_shows_every_process_counters(data_dir: Path, image_server: ImageServer) -> None:
    server = RetouchProcess(data_dir, server_env()).serve("--api-processes", "2")
    try:
        api = Api(server.base, server.read_first_key())
        request_id = api.submit_ok({"prompt": "x", "image_urls": [image_server.url("/square.png")]})
        assert api.wait(request_id)["status"] == "succeeded"
        # The worker counts a job once its result is recorded, which a poll may see first.
        finished_once(server.base)
        for _ in range(6):
            scraped = fresh_scrape(server.base)
            finished = scraped.value(FINISHED, endpoint=EDIT, outcome="succeeded", code="")
            assert finished == 1, "the worker's counter is not shown"
            for stage in ("fetch", "engine", "encode", "store", "job"):
                assert (
                    scraped.value(
                        "retouch_job_stage_duration_seconds_count", endpoint=EDIT, stage=stage
                    )
                    == 1
                ), stage
            submits = scraped.value(
                "retouch_http_requests_total", route=SUBMIT_ROUTE, method="POST", status="200"
            )
            assert submits == 1, "an API process's counter is not shown"
            assert scraped.value("retouch_scrape_database_up") == 1
            assert scraped.value("retouch_workers") == 1
        assert list((data_dir / "metrics").glob("*.db")), "no multiprocess files"
    finally:
        server.stop()


def test_a_standalone_worker_serves_its_metrics(data_dir: Path, image_server: ImageServer) -> None:
    env = server_env()
    server = RetouchProcess(data_dir, env).serve("--no-worker")
    port = free_port()
    metrics = ("--metrics-port", str(port))
    worker = subprocess.Popen(
        [sys.executable, "-m", "retouch", "worker", "--data-dir", str(data_dir), *metrics],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=with_database(env, data_dir),
    )
    try:
        api = Api(server.base, server.read_first_key())
        request_id = api.submit_ok({"prompt": "x", "image_urls": [image_server.url("/square.png")]})
        assert api.wait(request_id)["status"] == "succeeded"
        scraped = finished_once(f"http://127.0.0.1:{port}")
        # Only the worker's own: the database's gauges are the API's.
        assert "retouch_queue_depth" not in scraped.names()
        # serve's one API process counts into its multiprocess folder too (its values were made
        # after prometheus_client was imported: see retouch.metrics.multiprocess.enable).
        api_side = fresh_scrape(server.base)
        submits = api_side.value(
            "retouch_http_requests_total", route=SUBMIT_ROUTE, method="POST", status="200"
        )
        assert submits == 1
        assert api_side.value(FINISHED, endpoint=EDIT, outcome="succeeded", code="") == 0
        assert list((data_dir / "metrics").glob("counter_*.db"))
    finally:
        worker.terminate()
        worker.wait(30)
        server.stop()
