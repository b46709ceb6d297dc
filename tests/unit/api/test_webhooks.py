"""Webhooks in-process: `?webhook=` on submit, a receiver on 127.0.0.1 that verifies every
delivery with the standardwebhooks library, refused addresses, and the per-key secret's routes
(see e2e/test_webhooks.py for retries across a restart)."""

from __future__ import annotations

import re
from pathlib import Path

from e2e_support import Api, ImageServer
from webhook_receiver import (
    QUICK_RETRIES,
    cancelled_with_webhook,
    codes,
    data_uri,
    secret,
    submit_with_webhook,
    submitted,
    wait_for_webhook,
    webhook_receiver,
)

from ..inprocess import in_process_server


def test_secret_is_stable_per_key_and_rotates(api: Api, second_api: Api) -> None:
    first = secret(api)
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", first)
    assert secret(api) == first
    assert secret(second_api) != first
    rotated = secret(api, rotate=True)
    assert rotated != first and secret(api) == rotated
    anonymous = api.http.get(f"{api.base}/v1/webhooks/secret", timeout=10)
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


def test_refused_addresses(tmp_path: Path) -> None:
    with (
        in_process_server(
            tmp_path / "data", worker=False, fetch_allow=(), **QUICK_RETRIES
        ) as server,
        webhook_receiver() as receiver,
    ):
        api = server.api()
        literal = submit_with_webhook(api, "http://10.0.0.1/hook", data_uri())
        assert literal.status_code == 422, literal.text
        assert "refused address 10.0.0.1 (private network)" in literal.text
        # Every form the resolver reads as an address is one too, refused before the job runs.
        for host in ("2130706433", "0x7f000001", "127.1", "0", "0177.0.0.1"):
            refused = submit_with_webhook(api, f"http://{host}/hook", data_uri())
            assert refused.status_code == 422, (host, refused.text)
            assert [problem["field"] for problem in refused.json()["detail"]] == ["webhook"]
        # A name is checked when it is resolved, at each delivery.
        port = receiver.base.rsplit(":", 1)[1]
        request_id = cancelled_with_webhook(api, f"http://localhost:{port}/hook")
        webhook = wait_for_webhook(api, request_id, lambda w: len(w["attempts"]) >= 2)
        assert receiver.connections == 0
    assert webhook["state"] == "pending" and codes(webhook)[:2] == [None, None]
    error = webhook["attempts"][0]["error"]
    assert re.match(r"refused address (127\.0\.0\.1|::1) \(loopback\) for host localhost", error)
    assert "RETOUCH_FETCH_ALLOW" in error
