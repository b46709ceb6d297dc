"""Beyond the contract's four calls: idempotent submits, `Prefer: wait`,
Retry-After, the request list, the event stream and the webhook parameter's checks."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from client_support import occupy_worker
from e2e_support import Api, ImageServer, make_image

from ..inprocess import InProcessServer

ENDPOINT_URL = "/v1/models/google/nano-banana-2/edit"


def body_for(
    image_server: ImageServer, prompt: str = "make it blue", **extra: Any
) -> dict[str, Any]:
    return {
        "prompt": prompt,
        "image_urls": [image_server.url("/square.png")],
        "resolution": "0.5K",
        **extra,
    }


def unsigned(result: dict[str, Any]) -> dict[str, Any]:
    """A result body without its URLs' signatures, which change with the second it is read."""
    output = result.get("output") or {}
    images = [url.split("?")[0] for url in output.get("images", [])]
    return {**result, "output": {**output, "images": images, "image": None}}


def post(
    api: Api, body: Any, headers: Mapping[str, str | bytes] | None = None, **params: str
) -> httpx.Response:
    return api.http.post(
        f"{api.base}{ENDPOINT_URL}",
        json=body,
        params=params,
        # As bytes: a test may send a header value that is not ASCII.
        headers=[
            (name.encode(), value if isinstance(value, bytes) else value.encode())
            for name, value in {**api.headers, **(headers or {})}.items()
        ],
        timeout=90,
    )


# --- idempotency ------------------------------------------------------------------------------


def test_same_idempotency_key_and_body_answers_the_first_request(
    api: Api, image_server: ImageServer
) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = post(api, body_for(image_server), key)
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    # Key order and whitespace do not make another request: the validated body is compared.
    reordered = json.loads(json.dumps(body_for(image_server)))
    again = post(api, dict(reversed(list(reordered.items()))), key)
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    listed = api.http.get(f"{api.base}/v1/requests", headers=api.headers, params={"limit": 100})
    ids = [item["request_id"] for item in listed.json()["requests"]]
    assert ids.count(first.json()["request_id"]) == 1
    assert api.wait(first.json()["request_id"])["status"] == "succeeded"


def test_concurrent_retries_with_one_key_create_one_job(
    api: Api, image_server: ImageServer
) -> None:
    key = {"Idempotency-Key": f"retry-{uuid.uuid4()}"}
    answers: list[httpx.Response] = []

    def send() -> None:
        answers.append(post(api, body_for(image_server, "concurrent"), key))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [200] * 6
    assert len({a.json()["request_id"] for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 5


def test_same_key_with_another_body_is_a_conflict(api: Api, image_server: ImageServer) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = post(api, body_for(image_server), key)
    assert first.status_code == 200
    for changed in (
        post(api, body_for(image_server, seed=7), key),
        post(api, body_for(image_server), key, webhook="https://hooks.example.com/a"),
    ):
        assert changed.status_code == 409, changed.text
        error = changed.json()
        assert error["error_code"] == 409001
        assert "Idempotency-Key" in error["error_message"]
        assert first.json()["request_id"] in error["error_message"]


def test_idempotency_keys_belong_to_one_api_key(
    api: Api, image_server: ImageServer, second_api: Api
) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    mine = post(api, body_for(image_server), key)
    theirs = post(second_api, body_for(image_server), key)
    assert mine.status_code == theirs.status_code == 200
    assert mine.json()["request_id"] != theirs.json()["request_id"]
    assert "idempotent-replayed" not in theirs.headers


@pytest.mark.parametrize("bad", ["", "tab\there", "x" * 256, "naïve"])
def test_malformed_idempotency_key_is_refused(
    api: Api, image_server: ImageServer, bad: str
) -> None:
    response = api.http.post(
        f"{api.base}{ENDPOINT_URL}",
        content=json.dumps(body_for(image_server)).encode(),
        # Bytes, so a non-ASCII key reaches the server as sent (as UTF-8).
        headers=[
            *((name.encode(), value.encode()) for name, value in api.headers.items()),
            (b"Content-Type", b"application/json"),
            (b"Idempotency-Key", bad.encode()),
        ],
        timeout=30,
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "Idempotency-Key"


# --- Prefer: wait -----------------------------------------------------------------------------


def test_prefer_wait_answers_the_result_when_the_job_ends_in_time(
    api: Api, image_server: ImageServer
) -> None:
    response = post(api, body_for(image_server), {"Prefer": "wait=60"})
    assert response.status_code == 200
    assert response.headers["preference-applied"] == "wait=60"
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["output"]["image"].startswith(f"{api.base}/v1/files/")
    assert unsigned(body) == unsigned(api.result(body["request_id"]).json())


def test_prefer_wait_answers_the_submit_body_when_time_runs_out(
    api: Api, image_server: ImageServer, server: InProcessServer
) -> None:
    with server.held_job(api):
        response = post(api, body_for(image_server), {"Prefer": "respond-async, wait=1"})
    assert response.status_code == 200
    assert response.headers["preference-applied"] == "wait=1"
    body = response.json()
    assert set(body) == {"request_id", "status_url", "result_url", "cancel_url"}
    assert api.wait(body["request_id"])["status"] == "succeeded"


@pytest.mark.parametrize(
    "prefer",
    ["wait=61", "wait=-1", "wait=soon", "wait=", "wait=\u00b2", "wait=" + "0" * 5000 + "1"],
)
def test_bad_prefer_wait_is_refused(api: Api, image_server: ImageServer, prefer: str) -> None:
    # Latin-1 on the wire, as a client may send it: "²" is a digit to str.isdigit().
    response = post(api, body_for(image_server), {"Prefer": prefer.encode("latin-1")})
    assert response.status_code == 422
    error = response.json()
    assert error["detail"][0]["field"] == "Prefer" and "0 to 60" in error["error_message"]


def test_other_preferences_are_ignored(api: Api, image_server: ImageServer) -> None:
    response = post(api, body_for(image_server), {"Prefer": "return=minimal"})
    assert response.status_code == 200 and "preference-applied" not in response.headers
    api.wait(response.json()["request_id"])


# --- Retry-After and the request list ---------------------------------------------------------


def test_retry_after_while_unfinished_only(
    api: Api, image_server: ImageServer, server: InProcessServer
) -> None:
    with server.held_job(api) as blocker:
        queued = api.submit_ok(body_for(image_server))
        for response in (api.status(queued), api.result(queued)):
            assert response.status_code == 200
            assert 1 <= int(response.headers["retry-after"]) <= 10
        running = api.status(blocker)
        assert running.json()["status"] == "in_progress" and running.headers["retry-after"] == "1"
    api.wait(queued)
    assert "retry-after" not in api.status(queued).headers
    assert "retry-after" not in api.result(queued).headers


def test_request_list_is_newest_first_paginated_and_per_key(
    api: Api, image_server: ImageServer, second_api: Api
) -> None:
    ids = [second_api.submit_ok(body_for(image_server, f"listed {n}")) for n in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.http.get(f"{api.base}/v1/requests", headers=second_api.headers, params=params)
        assert page.status_code == 200
        body = page.json()
        assert len(body["requests"]) <= 2
        seen += [item["request_id"] for item in body["requests"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen[:5] == list(reversed(ids))
    first = api.http.get(f"{api.base}/v1/requests", headers=second_api.headers).json()["requests"][
        0
    ]
    assert first["endpoint"] == "google/nano-banana-2/edit"
    assert first["status"] in {"in_queue", "in_progress", "succeeded"}
    assert first["status_url"] == f"{api.base}/v1/requests/{first['request_id']}/status"
    mine = api.http.get(f"{api.base}/v1/requests", headers=api.headers, params={"limit": 100})
    assert not set(ids) & {item["request_id"] for item in mine.json()["requests"]}
    for request_id in ids:
        second_api.wait(request_id)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"cursor": "abc"}, "cursor"),
        ({"cursor": ""}, "cursor"),
        ({"cursor": "\u00b2"}, "cursor"),
        ({"cursor": "9" * 23}, "cursor"),
        ({"cursor": "1" * 5000}, "cursor"),
    ],
)
def test_request_list_refuses_bad_parameters(api: Api, params: dict[str, str], field: str) -> None:
    response = api.http.get(f"{api.base}/v1/requests", headers=api.headers, params=params)
    assert response.status_code == 422
    assert field in response.json()["detail"][0]["field"]


def test_request_list_needs_a_key(api: Api) -> None:
    assert api.http.get(f"{api.base}/v1/requests").status_code == 401


# --- ?logs= on status and result --------------------------------------------------------------


def poll(
    api: Api, request_id: str, view: str, logs: str | None, key: bool = True
) -> httpx.Response:
    return api.http.get(
        f"{api.base}/v1/requests/{request_id}/{view}",
        headers=api.headers if key else {},
        params={} if logs is None else {"logs": logs},
    )


@pytest.mark.parametrize("view", ["status", "result"])
def test_logs_adds_the_job_s_log_lines(api: Api, image_server: ImageServer, view: str) -> None:
    request_id = api.submit_ok(body_for(image_server))
    api.wait(request_id)
    for spelling in (None, "false", "0", "off", "no"):
        assert "logs" not in poll(api, request_id, view, spelling).json()
    for spelling in ("true", "1", "on", "yes", "TRUE"):
        lines = poll(api, request_id, view, spelling).json()["logs"]
        assert any(line["message"].startswith("started by") for line in lines)
        assert all(line["time"].endswith("Z") and line["level"] for line in lines)


@pytest.mark.parametrize("view", ["status", "result"])
@pytest.mark.parametrize("value", ["maybe", "", "2", " true"])
def test_a_bad_logs_value_is_refused_once_the_key_is_known(api: Api, view: str, value: str) -> None:
    """Checked after the key and before the lookup, with pydantic's message, as FastAPI checks a
    `bool` query parameter."""
    refused = poll(api, "no-such-request", view, value)
    assert refused.status_code == 422
    assert refused.json() == {
        "error_code": 422001,
        "error_message": "invalid input: query.logs",
        "detail": [
            {
                "field": "query.logs",
                "path": ["query", "logs"],
                "message": "Input should be a valid boolean, unable to interpret input",
            }
        ],
    }
    assert poll(api, "no-such-request", view, value, key=False).status_code == 401


# --- the event stream -------------------------------------------------------------------------


def test_stream_sends_each_change_then_the_result(api: Api, image_server: ImageServer) -> None:
    # The stream is read while a job queues behind a running one: it sees every state.
    blocker = occupy_worker(api, image_server, seconds=2)
    request_id = api.submit_ok(body_for(image_server, num_images=2))
    events = api.events(request_id)
    names = [name for name, _ in events]
    assert names[-1] == "result" and set(names[:-1]) == {"status"}
    statuses = [data for name, data in events if name == "status"]
    assert statuses[0]["status"] == "in_queue" and statuses[0]["queue_position"] == 0
    assert any(s["status"] == "in_progress" for s in statuses)
    assert statuses[-1]["status"] == "completed"
    # Consecutive events differ: only changes are sent.
    assert all(a != b for a, b in itertools.pairwise(statuses))
    assert unsigned(events[-1][1]) == unsigned(api.result(request_id).json())
    assert events[-1][1]["status"] == "succeeded"
    api.wait(blocker)


def test_stream_of_a_finished_job_is_its_final_status_and_result(
    api: Api, image_server: ImageServer
) -> None:
    request_id = api.submit_ok(body_for(image_server))
    api.wait(request_id)
    events = api.events(request_id)
    assert [name for name, _ in events] == ["status", "result"]
    assert events[0][1]["status"] == "completed"


def test_stream_of_an_unknown_request_is_a_404(
    api: Api, second_api: Api, image_server: ImageServer
) -> None:
    response = api.http.get(f"{api.base}/v1/requests/{uuid.uuid4()}/stream", headers=api.headers)
    assert response.status_code == 404 and response.json()["error_code"] == 404001
    theirs = second_api.submit_ok(body_for(image_server))
    response = api.http.get(f"{api.base}/v1/requests/{theirs}/stream", headers=api.headers)
    assert response.status_code == 404
    second_api.wait(theirs)


# --- the webhook parameter --------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/x",
        "hooks.example.com/x",
        "http://10.0.0.7/hook",
        "http://[::1]:9/x",
    ],
)
def test_undeliverable_webhook_urls_are_refused_at_submit(
    api: Api, image_server: ImageServer, url: str
) -> None:
    response = post(api, body_for(image_server), webhook=url)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["field"] == "webhook"


def test_result_shows_the_webhook_waiting_for_its_job(
    api: Api, image_server: ImageServer, server: InProcessServer
) -> None:
    with server.held_job(api):
        submitted = post(api, body_for(image_server), webhook="https://hooks.example.com/retouch")
        assert submitted.status_code == 200
        request_id = submitted.json()["request_id"]
        webhook = api.result(request_id).json()["webhook"]
        assert webhook == {
            "url": "https://hooks.example.com/retouch",
            "state": "waiting_for_job",
            "attempts": [],
        }
    api.wait(request_id)


def test_a_retry_that_uploaded_the_same_file_again_is_the_same_request(
    api: Api, second_api: Api
) -> None:
    """`retouch edit --idempotency-key K photo.png`, run twice, uploads photo.png twice: the
    two URLs differ in their signatures, and the retry must still replay the first request."""

    def upload(who: Api) -> str:
        response = api.http.post(
            f"{who.base}/v1/files",
            headers=who.headers,
            files={"file": ("photo.png", make_image(96, 64), "image/png")},
        )
        assert response.status_code == 200, response.text
        return str(response.json()["url"])

    first_url, second_url = upload(api), upload(api)
    assert first_url.split("?")[0] == second_url.split("?")[0]
    assert upload(second_api).split("?")[0] != first_url.split("?")[0]
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = post(api, {"prompt": "retry", "image_urls": [first_url], "resolution": "0.5K"}, key)
    second = post(api, {"prompt": "retry", "image_urls": [second_url], "resolution": "0.5K"}, key)
    assert first.status_code == second.status_code == 200
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json()["request_id"] == first.json()["request_id"]
    assert api.wait(first.json()["request_id"])["status"] == "succeeded"


def test_unusual_but_valid_webhook_hosts_are_accepted(api: Api, image_server: ImageServer) -> None:
    # Punycode that does not decode, and an international name: both are for DNS to judge.
    for url in ("http://xn--a.com/hook", "https://bücher.example/hook"):
        response = post(api, body_for(image_server), webhook=url)
        assert response.status_code == 200, response.text
        api.cancel(response.json()["request_id"])


def test_the_same_file_uploaded_many_times_at_once(api: Api) -> None:
    data = make_image(120, 80)
    answers: list[httpx.Response] = []

    def upload() -> None:
        answers.append(
            api.http.post(
                f"{api.base}/v1/files",
                headers=api.headers,
                files={"file": ("same.png", data, "image/png")},
                timeout=60,
            )
        )

    threads = [threading.Thread(target=upload) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [200] * 12, [a.text for a in answers]
    response, image = api.download(answers[0].json()["url"])
    assert response.content == data and image.size == (120, 80)
