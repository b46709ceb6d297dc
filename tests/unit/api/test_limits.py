"""Per-key limits over the API: the submit rate and the queued-jobs cap answer 429001 with
Retry-After and a message naming the limit; the global cap stays 503001; keys' own limits
override the server's defaults; limits are counted in the store, so two API processes (two
apps on one data dir) share them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from e2e_support import Api
from retouch.api.app import create_app
from retouch.auth.keys import KeyLimits
from retouch.served_endpoints import load_endpoints
from retouch.services import open_services

from ..inprocess import SQUARE_PNG, AppTransport, InProcessServer, in_process_server
from ..metrics.metrics_support import scrape

BODY = {"prompt": "make it blue", "image_urls": ["data:image/png;base64," + SQUARE_PNG]}


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[InProcessServer]:
    with in_process_server(
        tmp_path / "data",
        worker=False,  # jobs stay queued: the queue caps are what is tested
        key_submit_rate="3/minute",
        key_max_queued=5,
        max_queued_jobs=8,
    ) as server:
        yield server


def assert_limited(response: object, *words: str) -> None:
    assert getattr(response, "status_code", None) == 429, getattr(response, "text", "")
    body = response.json()  # type: ignore[attr-defined]
    assert body["error_code"] == 429001
    for word in words:
        assert word in body["error_message"]
    retry_after = int(response.headers["Retry-After"])  # type: ignore[attr-defined]
    assert 1 <= retry_after <= 60


def rate_limited(server: InProcessServer, limit: str) -> float:
    """retouch_rate_limited_total{limit} as /metrics shows it."""
    counted = scrape(server.http(), server.base)
    return counted.value("retouch_rate_limited_total", limit=limit)


def test_the_submit_rate_answers_429_with_retry_after(limited: InProcessServer) -> None:
    api = limited.api()
    for _ in range(3):
        api.submit_ok(BODY)
    before = rate_limited(limited, "rate")
    response = api.submit(BODY)
    assert_limited(response, "rate limit", "3/minute", "--rate")
    assert rate_limited(limited, "rate") == before + 1
    # Another key has its own window.
    limited.api(limited.new_key("other")).submit_ok(BODY)


def test_a_refused_body_is_not_counted(limited: InProcessServer) -> None:
    api = limited.api()
    for _ in range(5):
        assert api.submit({"prompt": ""}).status_code == 422
    for _ in range(3):
        api.submit_ok(BODY)


def test_a_keys_own_rate_overrides_the_default(limited: InProcessServer) -> None:
    _, key = limited.services.keys.create("fast", limits=KeyLimits(submit_rate="5/minute"))
    api = limited.api(key)
    for _ in range(5):
        api.submit_ok(BODY)
    assert_limited(api.submit(BODY), "5/minute")


def test_the_keys_queue_cap_answers_429_and_the_global_cap_503(
    limited: InProcessServer,
) -> None:
    keys = limited.services.keys
    many = KeyLimits(submit_rate="100/minute")
    first = limited.api(keys.create("first", limits=many)[1])
    for _ in range(5):
        first.submit_ok(BODY)
    before = rate_limited(limited, "queued")
    assert_limited(first.submit(BODY), "queued-jobs limit", "5 jobs queued", "--max-queued")
    assert rate_limited(limited, "queued") == before + 1
    # Its own cap: 1 more. The global cap (8) then answers 503001 to anyone.
    second = limited.api(
        keys.create("second", limits=KeyLimits(max_queued=10, submit_rate="100/minute"))[1]
    )
    for _ in range(3):
        second.submit_ok(BODY)
    full = second.submit(BODY)
    assert full.status_code == 503 and full.json()["error_code"] == 503001
    assert full.headers["Retry-After"] == "5"


def test_an_edited_limit_applies_within_a_second(limited: InProcessServer) -> None:
    api = limited.api()
    for _ in range(3):
        api.submit_ok(BODY)
    assert api.submit(BODY).status_code == 429
    edited = limited.services.keys.edit(api.key.split("_")[1], submit_rate="10/minute")
    assert edited and edited[0].limits.submit_rate == "10/minute"
    limited.services.keys._records.clear()  # the cache's second, skipped
    api.submit_ok(BODY)


def test_two_api_processes_share_one_rate(limited: InProcessServer) -> None:
    """A second app on the same data dir (another API process) sees the first's submits."""
    services = open_services(limited.settings)
    try:
        with TestClient(
            create_app(limited.settings, services, load_endpoints(limited.settings))
        ) as other_app:
            api = limited.api()
            other = Api(
                str(other_app.base_url), api.key, httpx.Client(transport=AppTransport(other_app))
            )
            api.submit_ok(BODY)
            other.submit_ok(BODY)
            api.submit_ok(BODY)
            assert_limited(other.submit(BODY), "3/minute")
    finally:
        services.close()


def test_replays_and_refused_submits_do_not_use_up_the_rate(limited: InProcessServer) -> None:
    api = limited.api()
    keyed = {"Idempotency-Key": "first", **api.headers}
    url = f"{api.base}/v1/models/google/nano-banana-2/edit"
    first = api.http.post(url, json=BODY, headers=keyed)
    assert first.status_code == 200
    for _ in range(4):  # retries of the same request: answered again, not counted
        again = api.http.post(url, json=BODY, headers=keyed)
        assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    api.submit_ok(BODY)
    api.submit_ok(BODY)
    assert_limited(api.submit(BODY), "3/minute")
    # Over the rate, a retry of an accepted request still gets its job back.
    late = api.http.post(url, json=BODY, headers=keyed)
    assert late.status_code == 200 and late.json()["request_id"] == first.json()["request_id"]

    # Submits a queue cap refused leave the rate as it was.
    capped = limited.api(
        limited.services.keys.create(
            "capped", limits=KeyLimits(max_queued=1, submit_rate="3/minute")
        )[1]
    )
    capped.submit_ok(BODY)
    for _ in range(4):
        assert_limited(capped.submit(BODY), "queued-jobs limit")
    limited.services.keys.edit("capped", max_queued=10)
    limited.services.keys._records.clear()
    capped.submit_ok(BODY)
    capped.submit_ok(BODY)
    assert_limited(capped.submit(BODY), "rate limit")


def test_a_keys_limits_must_be_at_least_one(limited: InProcessServer) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        limited.services.keys.create("none", limits=KeyLimits(max_running=0))
    with pytest.raises(ValueError, match="at least 1"):
        limited.services.keys.edit("default", max_queued=0)
