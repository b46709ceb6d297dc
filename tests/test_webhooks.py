"""Webhooks end to end against `retouch serve`: `?webhook=` on submit, a receiver on 127.0.0.1
that verifies every delivery with the standardwebhooks library, retries that survive a
restart, refused addresses, and the per-key secret's routes."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e_support import (
    Api,
    ImageServer,
    RetouchProcess,
    make_image,
    seed_data_dir,
    server_env,
)
from webhook_receiver import webhook_receiver

EDIT = "google/nano-banana-2/edit"
QUICK_RETRIES = {"RETOUCH_WEBHOOK_FIRST_RETRY_SECONDS": "0.2", "RETOUCH_WEBHOOK_RETRY_FACTOR": "1"}


def submit_with_webhook(api: Api, webhook: str, image_url: str) -> httpx.Response:
    return httpx.post(
        f"{api.base}/v1/models/{EDIT}",
        params={"webhook": webhook},
        json={"prompt": "make it blue", "image_urls": [image_url], "resolution": "0.5K"},
        headers=api.headers,
        timeout=30,
    )


def submitted(api: Api, webhook: str, image_url: str) -> str:
    response = submit_with_webhook(api, webhook, image_url)
    assert response.status_code == 200, response.text
    return str(response.json()["request_id"])


def secret(api: Api, *, rotate: bool = False) -> str:
    response = httpx.request(
        "POST" if rotate else "GET",
        f"{api.base}/v1/webhooks/secret",
        headers=api.headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    value = response.json()["secret"]
    assert isinstance(value, str)
    return value


def wait_for_webhook(
    api: Api, request_id: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60
) -> dict[str, Any]:
    """The result's `webhook` field once `predicate` holds for it."""
    deadline = time.monotonic() + timeout
    webhook: dict[str, Any] = {}
    while time.monotonic() < deadline:
        webhook = api.result(request_id).json().get("webhook") or {}
        if webhook and predicate(webhook):
            return webhook
        time.sleep(0.05)
    raise AssertionError(f"webhook of {request_id} never got there: {webhook}")


def codes(webhook: dict[str, Any]) -> list[int | None]:
    return [attempt["status_code"] for attempt in webhook["attempts"]]


def data_uri() -> str:
    return "data:image/png;base64," + base64.b64encode(make_image(64, 64)).decode()


@pytest.fixture
def api_only(tmp_path: Path, models_cache: Path) -> Iterator[Callable[..., RetouchProcess]]:
    """Starts `retouch serve --no-worker` on one data dir: up in a second or two (its jobs end
    by being cancelled, which sends their webhooks like any other ending). A later start is a
    restart: same port (the base of the job's URLs), same key. All are stopped at the end."""
    data_dir = tmp_path / "data"
    seed_data_dir(data_dir, models_cache)
    started: list[RetouchProcess] = []

    def start(**env: str) -> RetouchProcess:
        server = RetouchProcess(data_dir, server_env(**env))
        if started:
            server.port, server.key = started[0].port, started[0].key
        started.append(server.serve("--no-worker"))
        if server.key is None:
            server.read_first_key()
        return server

    yield start
    for server in started:
        server.stop()


def cancelled_with_webhook(api: Api, webhook: str) -> str:
    request_id = submitted(api, webhook, data_uri())
    assert api.cancel(request_id).json()["outcome"] == "cancelled"
    return request_id


def test_secret_is_stable_per_key_and_rotates(api: Api, second_api: Api) -> None:
    first = secret(api)
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", first)
    assert secret(api) == first
    assert secret(second_api) != first
    rotated = secret(api, rotate=True)
    assert rotated != first and secret(api) == rotated
    anonymous = httpx.get(f"{api.base}/v1/webhooks/secret", timeout=10)
    assert anonymous.status_code == 401 and anonymous.json()["error_code"] == 401001


def test_the_result_is_posted_signed(api: Api, image_server: ImageServer) -> None:
    with webhook_receiver(secret(api)) as receiver:
        request_id = submitted(api, receiver.url, image_server.url("/square.png"))
        receiver.wait_for(lambda got: len(got) == 1)
        webhook = wait_for_webhook(api, request_id, lambda w: w["state"] == "delivered")
    [received] = receiver.received
    body = received.verified
    assert body is not None, "signature did not verify"
    assert received.headers["webhook-id"] == f"msg_{request_id}"
    assert body["request_id"] == request_id and body["status"] == "succeeded"
    # The body is the result body (without its `webhook` field); the file URLs are signed anew.
    result = api.result(request_id).json()
    assert "webhook" not in body and result.pop("webhook")
    assert {**body, "output": None} == {**result, "output": None}
    _, image = api.download(body["output"]["image"])
    assert image.size == (512, 512)
    assert webhook["url"] == receiver.url and codes(webhook) == [200]
    assert webhook["attempts"][0]["error"] is None and webhook["finished_at"]


def test_delivery_survives_a_restart_mid_retry(api_only: Callable[..., RetouchProcess]) -> None:
    server = api_only(**QUICK_RETRIES)
    api = server.api()
    with webhook_receiver(secret(api)) as receiver:
        receiver.answers[:] = [500] * 1_000_000  # failing until told otherwise
        request_id = cancelled_with_webhook(api, receiver.url)
        failing = wait_for_webhook(api, request_id, lambda w: len(w["attempts"]) >= 2)
        assert failing["state"] == "pending"
        server.stop()
        failed_before = len(receiver.received)
        receiver.answers.clear()  # accepting from now on
        again = api_only(**QUICK_RETRIES)
        receiver.wait_for(lambda got: any(r.status == 200 for r in got))
        webhook = wait_for_webhook(again.api(), request_id, lambda w: w["state"] != "pending")
    delivered = receiver.received[-1]
    assert delivered.status == 200 and delivered.verified is not None
    assert delivered.verified["request_id"] == request_id
    assert delivered.verified["status"] == "cancelled"
    assert [r.status for r in receiver.received[:failed_before]] == [500] * failed_before
    assert {r.headers["webhook-id"] for r in receiver.received} == {f"msg_{request_id}"}
    assert all(r.verified is not None for r in receiver.received)
    assert webhook["state"] == "delivered"
    assert codes(webhook)[-1] == 200 and codes(webhook).count(500) >= 2
    # An attempt cut short by the stop is listed too (no status, an "interrupted" error).
    assert set(codes(webhook)[:-1]) <= {500, None}


def test_refused_addresses(api_only: Callable[..., RetouchProcess]) -> None:
    api = api_only(RETOUCH_FETCH_ALLOW="", **QUICK_RETRIES).api()
    with webhook_receiver() as receiver:
        literal = submit_with_webhook(api, "http://10.0.0.1/hook", data_uri())
        assert literal.status_code == 422, literal.text
        assert "refused address 10.0.0.1 (private network)" in literal.text
        # A name is checked when it is resolved, at each delivery.
        port = receiver.base.rsplit(":", 1)[1]
        request_id = cancelled_with_webhook(api, f"http://localhost:{port}/hook")
        webhook = wait_for_webhook(api, request_id, lambda w: len(w["attempts"]) >= 2)
        assert receiver.connections == 0
    assert webhook["state"] == "pending" and codes(webhook)[:2] == [None, None]
    error = webhook["attempts"][0]["error"]
    assert re.match(r"refused address (127\.0\.0\.1|::1) \(loopback\) for host localhost", error)
    assert "RETOUCH_FETCH_ALLOW" in error
