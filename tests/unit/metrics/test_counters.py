"""The counters and histograms of GET /metrics, in-process: requests by route template (never
the raw path), method and status, with durations; job outcomes by code and stage durations,
counted by the worker where a job ends; webhook deliveries by outcome.

The values are this test process's (no multiprocess folder here; tests/e2e/test_metrics.py
covers a real `serve`), shared by every server of the session: each test compares two
scrapes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from e2e_support import Api, ImageServer
from retouch.metrics.multiprocess import serve_worker_metrics
from retouch.metrics.registry import RATE_LIMITED
from webhook_receiver import QUICK_RETRIES, secret, submitted, wait_for_webhook, webhook_receiver

from ..inprocess import SQUARE_PNG, InProcessServer, in_process_server
from .metrics_support import Scrape, scrape

EDIT = "google/nano-banana-2/edit"
STATUS_ROUTE = "/v1/requests/{request_id}/status"
SUBMIT_ROUTE = "/v1/models/{owner_name}/{model_name}/{task}"
REQUESTS = "retouch_http_requests_total"
DURATION_COUNT = "retouch_http_request_duration_seconds_count"
FINISHED = "retouch_jobs_finished_total"
STAGE_COUNT = "retouch_job_stage_duration_seconds_count"
STAGE_SUM = "retouch_job_stage_duration_seconds_sum"
HELD_IMAGE = "data:image/png;base64," + SQUARE_PNG
STAGES = ("fetch", "moderation", "engine", "resize", "encode", "store", "job")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    with in_process_server(tmp_path_factory.mktemp("metrics") / "data", **QUICK_RETRIES) as server:
        yield server


@pytest.fixture(scope="module")
def api(server: InProcessServer) -> Api:
    return server.api()


def scraped(server: InProcessServer) -> Scrape:
    return scrape(server.http(), server.base)


def test_requests_are_counted_by_route_template_method_and_status(
    server: InProcessServer, api: Api, image_server: ImageServer
) -> None:
    request_id = api.submit_ok({"prompt": "x", "image_urls": [image_server.url("/square.png")]})
    api.wait(request_id)
    before = scraped(server)
    for _ in range(3):
        assert api.status(request_id).status_code == 200
    assert api.status("no-such-request").status_code == 404
    assert api.http.get(f"{api.base}/no/such/route").status_code == 404
    assert api.http.delete(f"{api.base}/v1/requests/{request_id}/status").status_code == 405
    after = scraped(server)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta(REQUESTS, route=STATUS_ROUTE, method="GET", status="200") == 3
    assert delta(REQUESTS, route=STATUS_ROUTE, method="GET", status="404") == 1
    assert delta(REQUESTS, route=STATUS_ROUTE, method="DELETE", status="405") == 1
    assert delta(REQUESTS, route="unmatched", method="GET", status="404") == 1
    # The first scrape itself, counted once answered.
    assert delta(REQUESTS, route="/metrics", method="GET", status="200") == 1
    assert delta(DURATION_COUNT, route=STATUS_ROUTE, method="GET") == 4
    assert after.value(REQUESTS, route=SUBMIT_ROUTE, method="POST", status="200") >= 1
    # One series per route, never per request id or raw path.
    routes = {labels["route"] for labels in after.labels_of(REQUESTS)}
    assert not any(request_id in route or "no/such" in route for route in routes), routes
    assert after.value(
        "retouch_http_request_duration_seconds_bucket", route=STATUS_ROUTE, method="GET", le="+Inf"
    ) == after.value(DURATION_COUNT, route=STATUS_ROUTE, method="GET")


def test_job_outcomes_and_stage_durations(
    server: InProcessServer, api: Api, image_server: ImageServer
) -> None:
    before = scraped(server)
    done = [
        api.submit_ok({"prompt": f"ok {index}", "image_urls": [image_server.url("/square.png")]})
        for index in range(2)
    ]
    failing = api.submit_ok({"prompt": "x", "image_urls": [image_server.url("/missing.png")]})
    for request_id in done:
        assert api.wait(request_id)["status"] == "succeeded"
    failed = api.wait(failing)
    assert failed["status"] == "failed"
    code = failed["error"]["code"]
    after = scraped(server)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta(FINISHED, endpoint=EDIT, outcome="succeeded", code="") == 2
    assert delta(FINISHED, endpoint=EDIT, outcome="failed", code=code) == 1
    for stage in STAGES:
        assert delta(STAGE_COUNT, endpoint=EDIT, stage=stage) == 2, stage
        assert delta(STAGE_SUM, endpoint=EDIT, stage=stage) >= 0, stage
    # The stages are the result's own timings.
    timings = api.result(done[0]).json()["timings"]
    assert {"encode_s", "store_s", "encode_store_s"} <= set(timings)
    assert delta(STAGE_SUM, endpoint=EDIT, stage="job") >= timings["job_s"]


def test_cancelled_jobs_are_counted(server: InProcessServer, api: Api) -> None:
    before = scraped(server)
    with server.held_job(api):
        queued = api.submit_ok({"prompt": "x", "image_urls": [HELD_IMAGE]})
        assert api.cancel(queued).json()["outcome"] == "cancelled"
        assert api.cancel(queued).json()["outcome"] == "cancelled"  # counted once
    after = scraped(server)
    labels = {"endpoint": EDIT, "outcome": "cancelled", "code": ""}
    assert after.value(FINISHED, **labels) - before.value(FINISHED, **labels) == 1


def test_webhook_deliveries_by_outcome(
    server: InProcessServer, api: Api, image_server: ImageServer
) -> None:
    before = scraped(server)
    with webhook_receiver(secret(api)) as receiver:
        receiver.answers = [500]  # the first attempt fails, the second is delivered
        request_id = submitted(api, receiver.url, image_server.url("/square.png"))
        wait_for_webhook(api, request_id, lambda webhook: webhook["state"] == "delivered")
    after = scraped(server)
    name = "retouch_webhook_deliveries_total"
    assert after.value(name, outcome="retrying") - before.value(name, outcome="retrying") == 1
    assert after.value(name, outcome="delivered") - before.value(name, outcome="delivered") == 1


def test_rate_limit_rejections_are_shown_by_limit(server: InProcessServer) -> None:
    before = scraped(server)
    RATE_LIMITED.labels(limit="queued").inc()  # as the submit route counts a 429001
    after = scraped(server)
    name = "retouch_rate_limited_total"
    assert after.value(name, limit="queued") - before.value(name, limit="queued") == 1


def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    with in_process_server(tmp_path / "data", worker=False, metrics=False) as server:
        response = server.http().get(f"{server.base}/metrics")
        assert response.status_code == 404 and response.json()["error_code"] == 404002


def test_a_worker_serves_its_own_metrics_on_its_port() -> None:
    """`retouch worker --metrics-port`: the worker's counters, without the database gauges."""
    metrics = serve_worker_metrics(0, "127.0.0.1")
    try:
        base = f"http://127.0.0.1:{metrics.server_port}"
        RATE_LIMITED.labels(limit="rate").inc()
        with httpx.Client() as http:
            scraped = scrape(http, base)
        assert scraped.value("retouch_rate_limited_total", limit="rate") >= 1
        assert "retouch_scrape_database_up" not in scraped.names()
    finally:
        metrics.shutdown()
        metrics.server_close()


def test_the_registry_holds_only_retouch_metrics() -> None:
    from retouch.metrics.registry import REGISTRY

    names = {metric.name for metric in REGISTRY.collect()}
    assert names and all(name.startswith("retouch_") for name in names), names
    assert isinstance(REGISTRY, CollectorRegistry)
