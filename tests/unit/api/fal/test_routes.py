"""fal's queue API under /fal/, in-process: submit, status (202 until completed, logs),
its event stream, the response (output, or a failed/cancelled/unfinished request's error),
cancel, sync_mode's data: URIs, fal's error forms, `?fal_webhook=`, idempotency across
surfaces, and a job read through every surface whichever it came through."""

from __future__ import annotations

import base64
import io
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from PIL import Image
from standardwebhooks import Webhook

from e2e_support import Api, ImageServer
from retouch.api import stream
from retouch.api.fal import routes as fal_routes
from retouch.contract.states import JobState
from retouch.engine.base import EditRequest
from webhook_receiver import secret, webhook_receiver

from ...inprocess import SQUARE_PNG, InProcessServer

APP = "fal-ai/nano-banana-2/edit"
# Where fal's request URLs of the app sit: its `owner/alias`.
ROOT = "fal-ai/nano-banana-2"
IMAGE = f"data:image/png;base64,{SQUARE_PNG}"
LOG_FIELDS = {"message", "level", "source", "timestamp"}


def body(**extra: Any) -> dict[str, Any]:
    """A fal body whose job is quick: a 64×64 data: URI at 0.5K, so a 512×512 output."""
    return {"prompt": "make it blue", "image_urls": [IMAGE], "resolution": "0.5K", **extra}


def auth(server: InProcessServer, scheme: str = "Key") -> dict[str, str]:
    return {"Authorization": f"{scheme} {server.key}"}


def submit(
    server: InProcessServer,
    payload: Any,
    *,
    app: str = APP,
    scheme: str = "Key",
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    return server.http().post(
        f"{server.base}/fal/{app}",
        json=payload,
        params=params,
        headers={**auth(server, scheme), **(headers or {})},
    )


def submitted(server: InProcessServer, payload: Any, **options: Any) -> str:
    response = submit(server, payload, **options)
    assert response.status_code == 200, response.text
    return str(response.json()["request_id"])


def request_url(server: InProcessServer, request_id: str, tail: str = "") -> str:
    return f"{server.base}/fal/{ROOT}/requests/{request_id}{tail}"


def status(server: InProcessServer, request_id: str, **params: str) -> httpx.Response:
    return server.http().get(
        request_url(server, request_id, "/status"), params=params, headers=auth(server)
    )


def response_of(server: InProcessServer, request_id: str, tail: str = "") -> httpx.Response:
    return server.http().get(request_url(server, request_id, tail), headers=auth(server))


def cancel(server: InProcessServer, request_id: str) -> httpx.Response:
    return server.http().put(request_url(server, request_id, "/cancel"), headers=auth(server))


def finished(api: Api, server: InProcessServer, request_id: str) -> dict[str, Any]:
    """fal's status body once the request has ended."""
    api.wait(request_id)
    answer = status(server, request_id)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "COMPLETED"
    return dict(answer.json())


def unsigned(url: str) -> str:
    return url.split("?")[0]


def fal_detail(response: httpx.Response, status_code: int) -> str:
    """The message of an error in fal's form, `{"detail": "…"}`, and nothing else."""
    assert response.status_code == status_code, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()
    assert set(error) == {"detail"} and isinstance(error["detail"], str), error
    return str(error["detail"])


def fal_problems(response: httpx.Response) -> dict[tuple[Any, ...], dict[str, Any]]:
    """A 422 in fal's form (pydantic's list), by each problem's `loc`."""
    assert response.status_code == 422, response.text
    error = response.json()
    assert set(error) == {"detail"} and isinstance(error["detail"], list), error
    for problem in error["detail"]:
        assert set(problem) == {"loc", "msg", "type"}, problem
        assert problem["msg"] and problem["type"]
    return {tuple(problem["loc"]): problem for problem in error["detail"]}


def sse_data(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.startswith("data: "):
            yield json.loads(line.removeprefix("data: "))


def stream_statuses(
    server: InProcessServer, request_id: str, **params: str
) -> list[dict[str, Any]]:
    url = request_url(server, request_id, "/status/stream")
    with server.http().stream("GET", url, params=params, headers=auth(server)) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        return list(sse_data(answer.iter_lines()))


# --- submit and keys --------------------------------------------------------------------------


def test_submit_answers_the_request_and_its_urls_under_the_app_root(
    api: Api, server: InProcessServer
) -> None:
    answer = submit(server, body())
    assert answer.status_code == 200, answer.text
    submission = answer.json()
    request_id = submission["request_id"]
    uuid.UUID(request_id)
    root = request_url(server, request_id)
    assert submission == {
        "request_id": request_id,
        "response_url": root,
        "status_url": f"{root}/status",
        "cancel_url": f"{root}/cancel",
        "queue_position": submission["queue_position"],
    }
    assert isinstance(submission["queue_position"], int) and submission["queue_position"] >= 0
    # Each URL answers, and the submit's answer names the request in fal's header.
    assert answer.headers["x-fal-request-id"] == request_id
    finished(api, server, request_id)
    assert server.http().get(submission["status_url"], headers=auth(server)).status_code == 200
    assert server.http().get(submission["response_url"], headers=auth(server)).status_code == 200


@pytest.mark.parametrize("scheme", ["Key", "Bearer", "key", "BEARER"])
def test_key_and_bearer_schemes_are_accepted(
    api: Api, server: InProcessServer, scheme: str
) -> None:
    request_id = submitted(server, body(), scheme=scheme)
    headers = auth(server, scheme)
    # Every route takes it: status, and cancel (which stops it, or finds it started).
    polled = server.http().get(request_url(server, request_id, "/status"), headers=headers)
    assert polled.status_code in (200, 202) and polled.json()["request_id"] == request_id
    stopped = server.http().put(request_url(server, request_id, "/cancel"), headers=headers)
    assert stopped.status_code in (202, 400) and stopped.json()["status"] != "NOT_FOUND"
    api.wait(request_id)


@pytest.mark.parametrize(
    "header",
    [
        {"Authorization": "Token {key}"},
        {"Authorization": "Basic {key}"},
        {"Authorization": "Key"},
        {},
    ],
)
def test_other_schemes_or_no_key_are_401_naming_the_key_header(
    server: InProcessServer, header: dict[str, str]
) -> None:
    headers = {name: value.format(key=server.key) for name, value in header.items()}
    answer = server.http().post(f"{server.base}/fal/{APP}", json=body(), headers=headers)
    detail = fal_detail(answer, 401)
    assert "Authorization: Key <key>" in detail and "Bearer" in detail
    assert answer.headers["www-authenticate"] == "Key"


def test_an_unknown_key_is_401_in_fals_form(server: InProcessServer) -> None:
    answer = server.http().post(
        f"{server.base}/fal/{APP}", json=body(), headers={"Authorization": "Key rt_nope"}
    )
    assert "invalid or revoked API key" in fal_detail(answer, 401)
    # The request routes check the key too.
    unknown = server.http().get(request_url(server, str(uuid.uuid4()), "/status"))
    assert "Authorization: Key" in fal_detail(unknown, 401)


def test_an_unknown_app_is_404_naming_the_served_app_ids(server: InProcessServer) -> None:
    for app in ("fal-ai/nano-banana-2", "fal-ai/nano-banana/edit", "fal-ai/flux/dev", "acme"):
        detail = fal_detail(submit(server, body(), app=app), 404)
        assert detail == f"unknown app {app!r}; this server serves: {APP}"


def test_the_endpoints_own_id_is_an_app_id_too(api: Api, server: InProcessServer) -> None:
    answer = submit(server, body(), app="google/nano-banana-2/edit")
    assert answer.status_code == 200, answer.text
    request_id = answer.json()["request_id"]
    # Its URLs are under the endpoint's fal id, where every fal client looks for them.
    assert answer.json()["status_url"] == request_url(server, request_id, "/status")
    finished(api, server, request_id)


# --- status -----------------------------------------------------------------------------------


def test_status_is_202_in_queue_and_in_progress_then_200_completed(
    api: Api, server: InProcessServer
) -> None:
    with server.held_job(api) as running:
        first = submit(server, body())
        second = submit(server, body(prompt="second"))
        assert first.json()["queue_position"] == 0 and second.json()["queue_position"] == 1
        queued = first.json()["request_id"]
        in_progress = status(server, running)
        assert in_progress.status_code == 202, in_progress.text
        assert in_progress.json()["status"] == "IN_PROGRESS"
        assert "queue_position" not in in_progress.json()
        assert in_progress.json()["logs"] is None
        waiting = status(server, second.json()["request_id"])
        assert waiting.status_code == 202
        assert waiting.json()["status"] == "IN_QUEUE" and waiting.json()["queue_position"] == 1
        assert waiting.json()["logs"] is None
        assert status(server, queued).json()["queue_position"] == 0
    completed = finished(api, server, queued)
    root = request_url(server, queued)
    assert completed == {
        "status": "COMPLETED",
        "request_id": queued,
        "response_url": root,
        "status_url": f"{root}/status",
        "cancel_url": f"{root}/cancel",
        "logs": None,
        "metrics": {"inference_time": completed["metrics"]["inference_time"]},
    }
    assert completed["metrics"]["inference_time"] >= 0
    finished(api, server, second.json()["request_id"])


@pytest.fixture(scope="module")
def done(api: Api, server: InProcessServer) -> str:
    """A fal request that has succeeded, for the tests that only read one."""
    request_id = submitted(server, body(prompt="done"))
    api.wait(request_id)
    return request_id


def test_logs_are_listed_with_logs_1_or_true(api: Api, server: InProcessServer, done: str) -> None:
    contract = api.http.get(
        f"{api.base}/v1/requests/{done}/status", params={"logs": "1"}, headers=api.headers
    ).json()["logs"]
    for flag in ("1", "true", "True", "yes", "on"):
        answer = status(server, done, logs=flag)
        assert answer.status_code == 200
        logs = answer.json()["logs"]
        assert isinstance(logs, list) and logs, flag
        assert [line["message"] for line in logs] == [line["message"] for line in contract]
        for line in logs:
            assert set(line) == LOG_FIELDS, line
            assert line["level"] in {"INFO", "WARNING"} and line["source"] == "user"
            assert line["timestamp"].endswith("Z")


def test_logs_are_null_without_the_flag_or_with_it_off(server: InProcessServer, done: str) -> None:
    for params in ({}, {"logs": "0"}, {"logs": "false"}, {"logs": "off"}):
        answer = status(server, done, **params)
        assert answer.status_code == 200 and answer.json()["logs"] is None, params


@pytest.mark.parametrize("flag", ["maybe", "2", ""])
def test_a_logs_flag_that_is_no_boolean_is_a_422_in_fals_form(
    server: InProcessServer, done: str, flag: str
) -> None:
    problems = fal_problems(status(server, done, logs=flag))
    assert list(problems) == [("query", "logs")]
    assert problems["query", "logs"]["type"] == "bool_parsing"


def test_status_of_an_unknown_or_another_keys_request_is_404(
    server: InProcessServer, second_api: Api
) -> None:
    assert "not found" in fal_detail(status(server, str(uuid.uuid4())), 404)
    theirs = second_api.submit_ok({"prompt": "theirs", "image_urls": [IMAGE], "resolution": "0.5K"})
    assert "not found" in fal_detail(status(server, theirs), 404)
    second_api.wait(theirs)


def test_the_status_path_reads_any_apps_request(server: InProcessServer, done: str) -> None:
    """fal's clients build the URL from the app id they submitted to: the request id is what
    names the request."""
    answer = server.http().get(
        f"{server.base}/fal/google/nano-banana-2/requests/{done}/status", headers=auth(server)
    )
    assert answer.status_code == 200 and answer.json()["request_id"] == done
    assert answer.json()["status_url"] == request_url(server, done, "/status")


# --- the status stream ------------------------------------------------------------------------


def test_the_status_stream_of_an_ended_request_is_its_completed_status(
    api: Api, server: InProcessServer, done: str
) -> None:
    assert stream_statuses(server, done) == [finished(api, server, done)]


@dataclass
class Followed:
    """The states of the job each snapshot the stream route was given showed, once it had
    sent its event: the in-process transport hands back a stream only once it has ended,
    so a test learns what the stream has sent from here."""

    states: list[JobState] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, wanted: JobState) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: wanted in self.states, 30), self.states


@pytest.fixture
def followed(monkeypatch: pytest.MonkeyPatch) -> Followed:
    seen = Followed()
    original = stream.follow_job

    def follow(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async def snapshots() -> AsyncIterator[Any]:
            async for snapshot in original(*args, **kwargs):
                yield snapshot
                # Resumed: the route has sent this snapshot's event and asks for the next.
                if not isinstance(snapshot, str):
                    with seen.changed:
                        seen.states.append(snapshot.job.state)
                        seen.changed.notify_all()

        return snapshots()

    monkeypatch.setattr(fal_routes, "follow_job", follow)
    return seen


def test_the_status_stream_follows_a_request_to_completed(
    api: Api, server: InProcessServer, followed: Followed
) -> None:
    ahead, ahead_gate = server.engine.hold()
    own, own_gate = server.engine.hold()
    blocker = api.submit_ok({"prompt": ahead, "image_urls": [IMAGE]})
    events: list[dict[str, Any]] = []

    def read_stream() -> None:
        events.extend(stream_statuses(server, request_id, logs="1"))

    try:
        api.wait_for_status(blocker, "in_progress")
        request_id = submitted(server, body(prompt=own))
        reader = threading.Thread(target=read_stream)
        reader.start()
        followed.wait_for(JobState.QUEUED)
        ahead_gate.set()
        followed.wait_for(JobState.RUNNING)
        own_gate.set()
        reader.join(30)
        assert not reader.is_alive()
    finally:
        ahead_gate.set()
        own_gate.set()
        api.wait(blocker)
    statuses = [event["status"] for event in events]
    assert statuses[0] == "IN_QUEUE" and events[0]["queue_position"] == 0
    assert statuses[-1] == "COMPLETED" and statuses.count("COMPLETED") == 1
    assert "IN_PROGRESS" in statuses
    assert statuses == sorted(statuses, key=["IN_QUEUE", "IN_PROGRESS", "COMPLETED"].index)
    assert all(event["request_id"] == request_id for event in events)
    # With ?logs=1 each event carries the lines so far; the last has them all, as a poll.
    assert events[-1] == status(server, request_id, logs="1").json()
    assert events[-1]["logs"] and events[-1]["metrics"]["inference_time"] >= 0
    assert events[0]["logs"] == []


def test_the_status_stream_of_an_unknown_request_is_404(server: InProcessServer) -> None:
    answer = server.http().get(
        request_url(server, str(uuid.uuid4()), "/status/stream"), headers=auth(server)
    )
    assert "not found" in fal_detail(answer, 404)


# --- the response -----------------------------------------------------------------------------


def test_the_response_of_a_succeeded_request_is_the_output(
    api: Api, server: InProcessServer
) -> None:
    request_id = submitted(server, body(seed=7, num_images=2))
    finished(api, server, request_id)
    answer = response_of(server, request_id)
    assert answer.status_code == 200, answer.text
    output = answer.json()
    assert output["seed"] == 7 and output["description"] == ""
    assert output["has_nsfw_concepts"] == [False, False]
    assert any("preview model" in warning for warning in output["warnings"])
    assert len(output["images"]) == 2
    for image in output["images"]:
        assert set(image) == {"url", "content_type", "file_name", "file_size", "width", "height"}
        assert image["url"].startswith(f"{server.base}/v1/files/{request_id}/")
        assert image["content_type"] == "image/png"
        assert unsigned(image["url"]).rsplit("/", 1)[1] == image["file_name"]
        assert image["file_name"].endswith(".png")
        assert (image["width"], image["height"]) == (512, 512)
        downloaded, picture = api.download(image["url"])
        assert len(downloaded.content) == image["file_size"]
        assert picture.format == "PNG" and picture.size == (512, 512)
    # The contract's result names the same files.
    result = api.result(request_id).json()
    assert [unsigned(url) for url in result["output"]["images"]] == [
        unsigned(image["url"]) for image in output["images"]
    ]


def test_the_response_route_answers_as_the_request_route(
    api: Api, server: InProcessServer, image_server: ImageServer, done: str
) -> None:
    failed = submitted(server, body(image_urls=[image_server.url("/missing.png")]))
    finished(api, server, failed)
    plain, named = response_of(server, done), response_of(server, done, "/response")
    assert plain.status_code == named.status_code == 200
    for images in (plain.json()["images"], named.json()["images"]):
        for image in images:
            image["url"] = unsigned(image["url"])  # signed anew each second
    assert plain.json() == named.json()
    for request_id, status_code in ((failed, 422), (str(uuid.uuid4()), 404)):
        plain, named = response_of(server, request_id), response_of(server, request_id, "/response")
        assert plain.status_code == named.status_code == status_code
        assert plain.json() == named.json()


def test_the_response_of_a_failed_request_is_422_with_its_error_type(
    api: Api, server: InProcessServer, image_server: ImageServer
) -> None:
    request_id = submitted(server, body(image_urls=[image_server.url("/missing.png")]))
    completed = finished(api, server, request_id)
    answer = response_of(server, request_id)
    assert answer.status_code == 422, answer.text
    error = answer.json()
    assert set(error) == {"detail", "error_type"}
    assert error["detail"].startswith("image_urls[0]: ") and "404" in error["detail"]
    assert error["error_type"] == "invalid_input_image"
    # The status says the same.
    assert (completed["error"], completed["error_type"]) == (error["detail"], error["error_type"])
    result = api.result(request_id).json()
    assert result["status"] == "failed" and result["error"]["message"] == error["detail"]


def test_the_response_of_a_request_the_server_failed_is_500(
    api: Api, server: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = server.engine
    edit = engine.edit
    broken = f"the engine breaks {uuid.uuid4()}"

    def breaking(request: EditRequest, *args: Any, **kwargs: Any) -> list[Image.Image]:
        if request.prompt == broken:
            raise RuntimeError("CUDA out of memory (a test's)")
        return edit(request, *args, **kwargs)

    monkeypatch.setattr(engine, "edit", breaking)
    request_id = submitted(server, body(prompt=broken))
    completed = finished(api, server, request_id)
    answer = response_of(server, request_id, "/response")
    assert answer.status_code == 500, answer.text
    assert answer.json() == {"detail": completed["error"], "error_type": "engine_error"}
    assert "CUDA out of memory" in completed["error"]


def test_the_response_of_a_cancelled_request_is_400_request_cancelled(
    api: Api, server: InProcessServer
) -> None:
    with server.held_job(api):
        request_id = submitted(server, body())
        assert cancel(server, request_id).status_code == 202
    answer = response_of(server, request_id)
    assert answer.status_code == 400
    assert answer.json() == {
        "detail": "the request was cancelled",
        "error_type": "request_cancelled",
    }
    completed = status(server, request_id)
    assert completed.status_code == 200 and completed.json()["status"] == "COMPLETED"
    assert completed.json()["error_type"] == "request_cancelled"
    assert "metrics" not in completed.json()  # it never ran


def test_the_response_of_an_unfinished_request_is_400(api: Api, server: InProcessServer) -> None:
    with server.held_job(api) as running:
        request_id = submitted(server, body())
        for unfinished in (running, request_id):
            for tail in ("", "/response"):
                detail = fal_detail(response_of(server, unfinished, tail), 400)
                assert "still in progress" in detail and "status_url" in detail
    finished(api, server, request_id)


def test_the_response_of_an_unknown_request_is_404(server: InProcessServer) -> None:
    assert "not found" in fal_detail(response_of(server, str(uuid.uuid4())), 404)


def test_sync_mode_answers_data_uris_of_the_images(api: Api, server: InProcessServer) -> None:
    request_id = submitted(server, body(sync_mode=True, output_format="png"))
    finished(api, server, request_id)
    output = response_of(server, request_id).json()
    [image] = output["images"]
    header, _, encoded = image["url"].partition(",")
    assert header == "data:image/png;base64"
    data = base64.b64decode(encoded, validate=True)
    assert len(data) == image["file_size"]
    picture = Image.open(io.BytesIO(data))
    assert picture.format == "PNG" and picture.size == (512, 512) == (
        image["width"],
        image["height"],
    )
    # The same bytes as the stored file, which the other surfaces answer by URL.
    stored = api.result(request_id).json()["output"]["image"]
    assert stored.startswith("http") and api.download(stored)[0].content == data


def test_without_sync_mode_the_images_are_urls(api: Api, server: InProcessServer) -> None:
    request_id = submitted(server, body(sync_mode=False))
    finished(api, server, request_id)
    [image] = response_of(server, request_id).json()["images"]
    assert image["url"].startswith(f"{server.base}/v1/files/")


def test_a_synchronous_run_answers_the_output_once_the_job_ends(
    api: Api, server: InProcessServer, image_server: ImageServer
) -> None:
    run = server.http().post(f"{server.base}/fal-run/{APP}", json=body(), headers=auth(server))
    assert run.status_code == 200, run.text
    request_id = run.headers["x-fal-request-id"]
    [image] = run.json()["images"]
    assert api.download(image["url"])[1].size == (512, 512)
    assert api.result(request_id).json()["status"] == "succeeded"
    failed = server.http().post(
        f"{server.base}/fal-run/{APP}",
        json=body(image_urls=[image_server.url("/missing.png")]),
        headers=auth(server),
    )
    assert failed.status_code == 422 and failed.json()["error_type"] == "invalid_input_image"
    unknown = server.http().post(f"{server.base}/fal-run/acme/x", json=body(), headers=auth(server))
    assert fal_detail(unknown, 404).startswith("unknown app 'acme/x'")


# --- cancel -----------------------------------------------------------------------------------


def test_cancel_of_a_queued_request_is_requested_and_again_when_repeated(
    api: Api, server: InProcessServer
) -> None:
    with server.held_job(api):
        request_id = submitted(server, body())
        for _ in range(2):
            answer = cancel(server, request_id)
            assert answer.status_code == 202, answer.text
            assert answer.json() == {"status": "CANCELLATION_REQUESTED"}
        assert api.status(request_id).json()["status"] == "cancelled"


def test_cancel_of_a_running_request_is_400_in_progress(api: Api, server: InProcessServer) -> None:
    with server.held_job(api) as running:
        answer = cancel(server, running)
        assert answer.status_code == 400
        assert answer.json()["status"] == "IN_PROGRESS"
        assert "RETOUCH_CANCEL_RUNNING" in answer.json()["detail"]
        assert status(server, running).json()["status"] == "IN_PROGRESS"
    assert api.result(running).json()["status"] == "succeeded"


def test_cancel_of_an_ended_request_is_400_already_completed(
    server: InProcessServer, done: str
) -> None:
    answer = cancel(server, done)
    assert answer.status_code == 400
    assert answer.json() == {"status": "ALREADY_COMPLETED", "detail": "the request has ended"}
    assert response_of(server, done).status_code == 200


def test_cancel_of_an_unknown_request_is_404_not_found(
    server: InProcessServer, second_api: Api
) -> None:
    unknown = str(uuid.uuid4())
    answer = cancel(server, unknown)
    assert answer.status_code == 404
    assert answer.json() == {
        "status": "NOT_FOUND",
        "detail": f"request {unknown} not found (or expired)",
    }
    # Nor is another key's request this key's to cancel.
    theirs = second_api.submit_ok({"prompt": "theirs", "image_urls": [IMAGE], "resolution": "0.5K"})
    assert cancel(server, theirs).json()["status"] == "NOT_FOUND"
    assert second_api.wait(theirs)["status"] == "succeeded"


# --- fal's error forms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", APP),
        ("DELETE", APP),
        ("PATCH", f"{ROOT}/requests/abc/status"),
        ("GET", f"{ROOT}/requests/abc/cancel"),
        ("GET", f"{ROOT}/requests/abc/bogus"),
        ("PUT", f"{ROOT}/requests/abc/status"),
        ("GET", "nothing"),
        ("GET", ""),
    ],
)
def test_wrong_methods_are_405_in_fals_form(
    server: InProcessServer, method: str, path: str
) -> None:
    """Every path under /fal/ is an app id to submit to: a path no other route serves is a
    wrong method there, never a 404."""
    answer = server.http().request(method, f"{server.base}/fal/{path}", headers=auth(server))
    assert fal_detail(answer, 405) == "method not allowed on this route: see /docs"
    assert "POST" in answer.headers["allow"]


@pytest.mark.parametrize(
    ("method", "tail", "allowed"),
    [("PATCH", "/status", "GET"), ("GET", "/cancel", "PUT"), ("DELETE", "", "GET")],
)
def test_a_405_allows_every_method_of_the_route(
    server: InProcessServer, method: str, tail: str, allowed: str
) -> None:
    url = request_url(server, str(uuid.uuid4()), tail)
    answer = server.http().request(method, url, headers=auth(server))
    fal_detail(answer, 405)
    assert allowed in [name.strip() for name in answer.headers["allow"].split(",")]


def test_a_post_to_a_request_route_is_a_submit_to_an_unknown_app(server: InProcessServer) -> None:
    for path in (f"{ROOT}/requests/{uuid.uuid4()}/cancel", f"{ROOT}/requests/abc/cancel/more", ""):
        assert fal_detail(submit(server, body(), app=path), 404).startswith(f"unknown app {path!r}")


def test_every_bad_field_is_one_422_in_fals_form(server: InProcessServer) -> None:
    answer = submit(
        server,
        {
            "prompt": "",
            "image_urls": ["ftp://example.com/a.png"],
            "safety_tolerance": "9",
            "aspect_ratio": "4:1",
            "sync_mode": "yes",
            "colour": "blue",
        },
    )
    problems = fal_problems(answer)
    assert set(problems) == {
        ("body", "prompt"),
        ("body", "image_urls", 0),
        ("body", "safety_tolerance"),
        ("body", "aspect_ratio"),
        ("body", "sync_mode"),
        ("body", "colour"),
    }
    assert problems["body", "colour"]["type"] == "extra_forbidden"
    assert '"1" to "6"' in problems["body", "safety_tolerance"]["msg"]
    assert "4:1" in problems["body", "aspect_ratio"]["msg"]
    assert problems["body", "sync_mode"]["msg"] == "must be true or false"
    assert "http(s) URL" in problems["body", "image_urls", 0]["msg"]
    assert "must not be empty" in problems["body", "prompt"]["msg"]


def test_a_missing_field_is_named_at_its_place_in_the_body(server: InProcessServer) -> None:
    problems = fal_problems(submit(server, {"prompt": "x"}))
    assert (
        list(problems) == [("body", "image_urls")]
        and problems["body", "image_urls"]["type"] == "missing"
    )


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"not json", "json_invalid"),
        (b"[1, 2]", "model_type"),
        (b"null", "model_type"),
        (b"", "json_invalid"),
    ],
)
def test_a_body_that_is_no_json_object_is_a_422_at_the_body(
    server: InProcessServer, content: bytes, kind: str
) -> None:
    answer = server.http().post(
        f"{server.base}/fal/{APP}",
        content=content,
        headers={**auth(server), "Content-Type": "application/json"},
    )
    problems = fal_problems(answer)
    assert list(problems) == [("body",)] and problems["body",]["type"] == kind


@pytest.mark.parametrize("tolerance", ["1", "2", "3", "4", "5", "6", 1, 6])
def test_safety_tolerance_strings_and_integers_are_accepted(
    api: Api, server: InProcessServer, tolerance: str | int
) -> None:
    with server.held_job(api):
        request_id = submitted(server, body(safety_tolerance=tolerance))
        prediction = server.http().get(
            f"{server.base}/replicate/v1/predictions/{request_id}", headers=auth(server, "Bearer")
        )
        assert prediction.json()["input"]["safety_tolerance"] == int(tolerance)
        assert cancel(server, request_id).status_code == 202


def test_a_null_seed_is_accepted_as_the_default(api: Api, server: InProcessServer) -> None:
    request_id = submitted(server, body(seed=None))
    finished(api, server, request_id)
    assert response_of(server, request_id).json()["seed"] == 0


# --- fal_webhook ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["ftp://hooks.example.com/a", "not a url", "http://", "http://10.0.0.1/hook"]
)
def test_a_bad_fal_webhook_is_a_422_naming_it(server: InProcessServer, url: str) -> None:
    problems = fal_problems(submit(server, body(), params={"fal_webhook": url}))
    assert list(problems) == [("query", "fal_webhook")]


def test_the_webhook_is_fals_body_signed_with_standard_webhooks(
    api: Api, server: InProcessServer, image_server: ImageServer
) -> None:
    key = secret(api)
    with webhook_receiver(key) as receiver:
        done = submitted(server, body(), params={"fal_webhook": receiver.url})
        failed = submitted(
            server,
            body(image_urls=[image_server.url("/missing.png")]),
            params={"fal_webhook": receiver.url},
        )
        synced = submitted(server, body(sync_mode=True), params={"fal_webhook": receiver.url})
        with server.held_job(api):
            cancelled = submitted(server, body(), params={"fal_webhook": receiver.url})
            assert cancel(server, cancelled).status_code == 202
        receiver.wait_for(lambda got: len(got) == 4)
    deliveries = {got.verified["request_id"]: got for got in receiver.received if got.verified}
    assert set(deliveries) == {done, failed, synced, cancelled}, "a signature did not verify"
    for request_id, got in deliveries.items():
        assert got.headers["webhook-id"] == f"msg_{request_id}"
        Webhook(key).verify(got.body, got.headers)  # as a fal-surface receiver checks it
    ok = deliveries[done].verified
    assert set(ok) == {"request_id", "gateway_request_id", "status", "payload"}
    assert ok["gateway_request_id"] == done and ok["status"] == "OK"
    [image] = ok["payload"]["images"]
    assert image["url"].startswith(f"{server.base}/v1/files/{done}/")
    assert api.download(image["url"])[1].size == (512, 512) == (image["width"], image["height"])
    assert ok["payload"]["seed"] == 0 and ok["payload"]["warnings"]
    error = deliveries[failed].verified
    assert error["status"] == "ERROR" and error["gateway_request_id"] == failed
    assert error["payload"] == response_of(server, failed).json()
    assert error["error"] == error["payload"]["detail"]
    assert error["payload"]["error_type"] == "invalid_input_image"
    # A sync_mode request's webhook carries URLs, not data: URIs.
    [synced_image] = deliveries[synced].verified["payload"]["images"]
    assert synced_image["url"].startswith("http")
    assert deliveries[cancelled].verified["payload"] == {
        "detail": "the request was cancelled",
        "error_type": "request_cancelled",
    }
    assert deliveries[cancelled].verified["status"] == "ERROR"


# --- idempotency and the other surfaces -------------------------------------------------------


def test_an_idempotency_key_replays_the_request_on_fal(api: Api, server: InProcessServer) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = submit(server, body(prompt="idempotent"), headers=key)
    again = submit(server, body(prompt="idempotent"), headers=key)
    assert first.status_code == again.status_code == 200
    assert again.json()["request_id"] == first.json()["request_id"]
    # Another body with the key is refused, in fal's form: a 422, not the contract's 409,
    # which fal's clients would retry (in vain).
    changed = submit(server, body(prompt="another"), headers=key)
    detail = fal_detail(changed, 422)
    assert "Idempotency-Key" in detail and first.json()["request_id"] in detail
    # So is the same body with sync_mode: its answer differs.
    assert fal_detail(submit(server, body(prompt="idempotent", sync_mode=True), headers=key), 422)
    finished(api, server, first.json()["request_id"])


def test_the_same_idempotency_key_on_another_surface_is_a_conflict_in_its_form(
    api: Api, server: InProcessServer
) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    payload = body(prompt="one key, two surfaces")
    request_id = submitted(server, payload, headers=key)
    contract = api.http.post(
        f"{api.base}/v1/models/google/nano-banana-2/edit",
        json=payload,
        headers={**api.headers, **key},
    )
    assert contract.status_code == 409, contract.text
    assert (
        contract.json()["error_code"] == 409001 and request_id in contract.json()["error_message"]
    )
    replicate = api.http.post(
        f"{api.base}/replicate/v1/models/google/nano-banana-2/predictions",
        json={"input": {"prompt": payload["prompt"], "image_input": [IMAGE], "resolution": "0.5K"}},
        headers={**api.headers, **key},
    )
    assert replicate.status_code == 409, replicate.text
    assert replicate.json()["status"] == 409 and request_id in replicate.json()["detail"]
    finished(api, server, request_id)


def test_a_fal_request_is_read_through_every_surface(api: Api, server: InProcessServer) -> None:
    request_id = submitted(server, body(seed=3))
    finished(api, server, request_id)
    output = response_of(server, request_id).json()
    result = api.result(request_id)
    assert result.status_code == 200 and result.json()["status"] == "succeeded"
    assert unsigned(result.json()["output"]["image"]) == unsigned(output["images"][0]["url"])
    prediction = api.http.get(
        f"{api.base}/replicate/v1/predictions/{request_id}", headers=api.headers
    )
    assert prediction.status_code == 200 and prediction.json()["status"] == "succeeded"
    assert prediction.json()["input"]["seed"] == 3
    assert unsigned(prediction.json()["output"]) == unsigned(output["images"][0]["url"])


def test_a_contract_request_is_read_on_fals_routes(api: Api, server: InProcessServer) -> None:
    request_id = api.submit_ok({"prompt": "contract", "image_urls": [IMAGE], "resolution": "0.5K"})
    completed = finished(api, server, request_id)
    assert completed["request_id"] == request_id and "error" not in completed
    [image] = response_of(server, request_id).json()["images"]
    assert unsigned(image["url"]) == unsigned(api.result(request_id).json()["output"]["image"])
