"""The gauges GET /metrics reads from the job database at each scrape (queue depth by endpoint
and key role, running jobs, workers and their GPU memory), a scrape while the database is
away (answered, without them), and RETOUCH_METRICS_TOKEN."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.exc import OperationalError

import retouch.api.metrics as metrics_route
from e2e_support import Api
from retouch.api.workers import WORKER_ALIVE_SECONDS

from ..databases import PostgresDatabases
from ..inprocess import SQUARE_PNG, InProcessServer, in_process_server
from ..tcp_proxy import TcpProxy, proxy_to
from .metrics_support import Scrape, scrape

EDIT = "google/nano-banana-2/edit"
IMAGE = ["data:image/png;base64," + SQUARE_PNG]
MIB = 1024 * 1024
GAUGES = {
    "retouch_queue_depth",
    "retouch_jobs_running",
    "retouch_workers",
    "retouch_worker_gpu_memory_bytes",
}
# A hang guard while the database is away: far above metrics_route.DATABASE_SECONDS.
GUARD_SECONDS = 30


def scraped(server: InProcessServer) -> Scrape:
    return scrape(server.http(), server.base)


def test_queue_depth_by_endpoint_and_key_role(tmp_path: Path) -> None:
    with in_process_server(tmp_path / "data", worker=False) as server:
        empty = scraped(server)
        assert empty.value("retouch_scrape_database_up") == 1
        assert empty.labels_of("retouch_queue_depth") == []
        assert empty.value("retouch_workers") == 0
        user = server.api()
        admin = Api(server.base, server.services.keys.create("ops", role="admin")[1], server.http())
        for _ in range(2):
            user.submit_ok({"prompt": "x", "image_urls": IMAGE})
        admin.submit_ok({"prompt": "x", "image_urls": IMAGE})
        queued = scraped(server)
        assert queued.value("retouch_queue_depth", endpoint=EDIT, key_role="user") == 2
        assert queued.value("retouch_queue_depth", endpoint=EDIT, key_role="admin") == 1
        assert queued.labels_of("retouch_jobs_running") == []


def test_running_jobs_workers_and_gpu_memory(tmp_path: Path) -> None:
    with in_process_server(tmp_path / "data") as server:
        api = server.api()
        # Another worker's heartbeat, from a GPU host (worker/memory.py's figures, in MiB).
        gpu = {"gpu_allocated_mib": 1024.0, "gpu_reserved_mib": 2048.0, "gpu_peak_mib": 1536.5}
        server.services.store.heartbeat("gpu-host:1", info={"memory": gpu, "endpoints": [EDIT]})
        with server.held_job(api):
            running = scraped(server)
        assert running.value("retouch_jobs_running", endpoint=EDIT) == 1
        assert running.value("retouch_workers") == 2
        memory = "retouch_worker_gpu_memory_bytes"
        assert running.value(memory, worker="gpu-host:1", kind="allocated") == 1024 * MIB
        assert running.value(memory, worker="gpu-host:1", kind="reserved") == 2048 * MIB
        assert running.value(memory, worker="gpu-host:1", kind="peak") == 1536.5 * MIB
        # The in-process worker has no GPU: no series of its own.
        assert {labels["worker"] for labels in running.labels_of(memory)} == {"gpu-host:1"}
        assert server.services.store.workers(seen_within=WORKER_ALIVE_SECONDS)


def test_a_scrape_without_the_database_answers_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*_: object, **__: object) -> None:
        raise OperationalError("SELECT", {}, Exception("the database is away"))

    with in_process_server(tmp_path / "data", worker=False) as server:
        monkeypatch.setattr(metrics_route, "read_snapshot", failing)
        down = scraped(server)
    assert down.value("retouch_scrape_database_up") == 0
    assert not GAUGES & down.names()
    assert "retouch_http_requests_total" in down.names()


def test_a_database_read_that_hangs_is_given_up_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()

    def hanging(*_: object, **__: object) -> None:
        gate.wait(GUARD_SECONDS)

    monkeypatch.setattr(metrics_route, "DATABASE_SECONDS", 0.05)
    with in_process_server(tmp_path / "data", worker=False) as server:
        monkeypatch.setattr(metrics_route, "read_snapshot", hanging)
        try:
            down = scraped(server)
        finally:
            gate.set()
    assert down.value("retouch_scrape_database_up") == 0


@pytest.fixture
def proxied_postgres_url(postgres: PostgresDatabases) -> Iterator[tuple[str, TcpProxy]]:
    with proxy_to(direct := postgres.create()) as proxy:
        yield proxy.url_through(direct), proxy


def test_an_unreachable_postgres_is_scraped_as_down(
    proxied_postgres_url: tuple[str, TcpProxy], tmp_path: Path
) -> None:
    url, proxy = proxied_postgres_url
    with in_process_server(tmp_path / "data", worker=False, database_url=url) as server:
        assert scraped(server).value("retouch_scrape_database_up") == 1
        proxy.cut()
        try:
            with httpx.Client(transport=server.transport, timeout=GUARD_SECONDS) as client:
                down = scrape(client, server.base)
        finally:
            proxy.restore()
        assert down.value("retouch_scrape_database_up") == 0
        assert not GAUGES & down.names()
        assert scraped(server).value("retouch_scrape_database_up") == 1


def test_the_token_when_set(tmp_path: Path) -> None:
    with in_process_server(tmp_path / "data", worker=False, metrics_token="s3cret") as server:
        http = server.http()
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            refused = http.get(f"{server.base}/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.json()["error_code"] == 401001
            assert refused.headers["www-authenticate"] == "Bearer"
        # An API key is no metrics token.
        assert http.get(f"{server.base}/metrics", headers=server.api().headers).status_code == 401
        assert scrape(http, server.base, token="s3cret").value("retouch_scrape_database_up") == 1


def test_no_token_no_key_needed(tmp_path: Path) -> None:
    with in_process_server(tmp_path / "data", worker=False) as server:
        response = server.http().get(f"{server.base}/metrics")
        assert response.status_code == 200
        assert "/metrics" not in server.transport.app.app.openapi()["paths"]  # type: ignore[attr-defined]
