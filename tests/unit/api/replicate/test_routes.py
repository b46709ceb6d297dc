"""Replicate's predictions API under /replicate/v1/, in-process: create (with `Prefer:
wait`), get, list, cancel, stream, the webhook and its secret, Replicate's problem forms,
and a prediction read through the other surfaces."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import replicate
from replicate.webhook import InvalidSignatureError, WebhookSigningSecret

from e2e_support import Api, ImageServer
from retouch.jobs.models import Claim
from webhook_receiver import secret, webhook_receiver

from ...inprocess import SQUARE_PNG, InProcessServer, in_process_server

MODEL = "google/nano-banana-2"
IMAGE = f"data:image/png;base64,{SQUARE_PNG}"
HEX64 = re.compile(r"[0-9a-f]{64}")
PREDICTION_FIELDS = {
    *("id", "model", "version", "input", "output", "error", "status", "logs", "metrics"),
    *("created_at", "started_at", "completed_at", "urls", "data_removed", "source"),
}


def model_input(**extra: Any) -> dict[str, Any]:
    """A quick job's input in Replicate's names: a 64×64 data: URI at 0.5K (512×512 out)."""
    return {"prompt": "make it blue", "image_input": [IMAGE], "resolution": "0.5K", **extra}


def auth(server: InProcessServer, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {server.key}"}


def create(
    server: InProcessServer,
    payload: Any,
    *,
    model: str = MODEL,
    scheme: str = "Bearer",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return server.http().post(
        f"{server.base}/replicate/v1/models/{model}/predictions",
        json=payload,
        headers={**auth(server, scheme), **(headers or {})},
    )


def created(server: InProcessServer, payload: Any, **options: Any) -> dict[str, Any]:
    answer = create(server, payload, **options)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def get(server: InProcessServer, prediction_id: str) -> httpx.Response:
    return server.http().get(
        f"{server.base}/replicate/v1/predictions/{prediction_id}", headers=auth(server)
    )


def cancel(server: InProcessServer, prediction_id: str) -> httpx.Response:
    return server.http().post(
        f"{server.base}/replicate/v1/predictions/{prediction_id}/cancel", headers=auth(server)
    )


def ended(api: Api, server: InProcessServer, prediction_id: str) -> dict[str, Any]:
    api.wait(prediction_id)
    answer = get(server, prediction_id)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """An error in Replicate's form: RFC 7807 problem details."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = dict(response.json())
    assert body["status"] == status and body["title"] and isinstance(body["detail"], str)
    return body


def invalid_fields(response: httpx.Response) -> dict[str, dict[str, Any]]:
    """A 422 in Replicate's form, its invalid fields by name."""
    body = problem(response, 422)
    assert set(body) == {"title", "detail", "status", "invalid_fields"}
    assert body["title"] == "Input validation failed"
    fields = body["invalid_fields"]
    for field in fields:
        assert set(field) == {"type", "field", "description"} and field["description"], field
    # `detail` lists each as "field: description".
    assert body["detail"] == "; ".join(f"{f['field']}: {f['description']}" for f in fields)
    return {field["field"]: field for field in fields}


def unsigned(url: str) -> str:
    return url.split("?")[0]


def stream_events(server: InProcessServer, prediction_id: str) -> list[tuple[str, str]]:
    url = f"{server.base}/replicate/v1/predictions/{prediction_id}/stream"
    events = []
    with server.http().stream("GET", url, headers=auth(server)) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in answer.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, line.removeprefix("data: ")))
    return events


# --- create -----------------------------------------------------------------------------------


def test_create_answers_201_with_the_starting_prediction(api: Api, server: InProcessServer) -> None:
    answer = create(server, {"input": model_input(output_format="jpg")})
    assert answer.status_code == 201, answer.text
    prediction = answer.json()
    assert set(prediction) >= PREDICTION_FIELDS
    prediction_id = prediction["id"]
    uuid.UUID(prediction_id)
    assert prediction["model"] == MODEL and HEX64.fullmatch(prediction["version"])
    assert prediction["status"] == "starting"
    assert prediction["output"] is None and prediction["error"] is None
    assert prediction["logs"] == "" and prediction["metrics"] == {}
    assert prediction["created_at"].endswith("Z") and prediction["completed_at"] is None
    assert prediction["source"] == "api" and prediction["data_removed"] is False
    # The input is echoed in Replicate's names and values, with the defaults filled in.
    assert prediction["input"] == {
        "prompt": "make it blue",
        "image_input": [IMAGE],
        "num_images": 1,
        "seed": 0,
        "aspect_ratio": "match_input_image",
        "resolution": "0.5K",
        "output_format": "jpg",
        "safety_tolerance": 4,
        "limit_generations": True,
        "google_search": False,
    }
    root = f"{server.base}/replicate/v1/predictions/{prediction_id}"
    assert prediction["urls"] == {
        "get": root,
        "cancel": f"{root}/cancel",
        "stream": f"{root}/stream",
    }
    assert ended(api, server, prediction_id)["status"] == "succeeded"


def test_the_version_is_stable_for_the_endpoint(api: Api, server: InProcessServer) -> None:
    first = created(server, {"input": model_input()})
    second = created(server, {"input": model_input(prompt="another")})
    assert first["version"] == second["version"]
    ended(api, server, first["id"])
    ended(api, server, second["id"])


def test_prefer_wait_answers_the_ended_prediction(api: Api, server: InProcessServer) -> None:
    answer = create(
        server, {"input": model_input(output_format="jpg")}, headers={"Prefer": "wait=20"}
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["preference-applied"] == "wait=20"
    prediction = answer.json()
    assert prediction["status"] == "succeeded" and prediction["error"] is None
    assert isinstance(prediction["output"], str)
    assert prediction["output"].startswith(f"{server.base}/v1/files/{prediction['id']}/")
    assert unsigned(prediction["output"]).endswith(".jpg")
    _, image = api.download(prediction["output"])
    assert image.format == "JPEG" and image.size == (512, 512)
    assert prediction["metrics"]["predict_time"] >= 0
    assert isinstance(prediction["logs"], str) and len(prediction["logs"].splitlines()) >= 2
    assert prediction["started_at"] and prediction["completed_at"]
    assert any("preview model" in warning for warning in prediction["warnings"])
    # What a get answers, but for the URLs' signatures.
    again = get(server, prediction["id"]).json()
    assert {**again, "output": unsigned(again["output"])} == {
        **prediction,
        "output": unsigned(prediction["output"]),
    }


def test_the_output_is_a_list_when_more_images_are_asked_for(
    api: Api, server: InProcessServer
) -> None:
    prediction = created(
        server, {"input": model_input(num_images=2)}, headers={"Prefer": "wait=20"}
    )
    assert prediction["status"] == "succeeded"
    output = prediction["output"]
    assert isinstance(output, list) and len(output) == 2 and len(set(output)) == 2
    for url in output:
        assert api.download(url)[1].size == (512, 512)


def test_a_bare_prefer_wait_waits_the_longest(server: InProcessServer) -> None:
    answer = create(server, {"input": model_input()}, headers={"Prefer": "wait"})
    assert answer.status_code == 201 and answer.headers["preference-applied"] == "wait=55"
    assert answer.json()["status"] == "succeeded"


@pytest.mark.parametrize("prefer", ["wait=x", "wait=61", "wait=-1", "wait=1.5"])
def test_a_bad_prefer_wait_is_a_422_naming_the_header(server: InProcessServer, prefer: str) -> None:
    fields = invalid_fields(create(server, {"input": model_input()}, headers={"Prefer": prefer}))
    [name] = fields
    assert name.endswith("Prefer") and "0 to 60" in fields[name]["description"]


def test_a_wait_that_ends_first_answers_starting(api: Api, server: InProcessServer) -> None:
    with server.held_job(api) as running:
        answer = create(server, {"input": model_input()}, headers={"Prefer": "wait=1"})
        assert answer.status_code == 201 and answer.headers["preference-applied"] == "wait=1"
        prediction = answer.json()
        assert prediction["status"] == "starting" and prediction["output"] is None
        # The same read of a running job says so: only a waited-out answer reads `starting`.
        assert get(server, running).json()["status"] == "processing"
    assert ended(api, server, prediction["id"])["status"] == "succeeded"


def test_a_failed_prediction_has_its_error(
    server: InProcessServer, image_server: ImageServer
) -> None:
    prediction = created(
        server,
        {"input": model_input(image_input=[image_server.url("/missing.png")])},
        headers={"Prefer": "wait=20"},
    )
    assert prediction["status"] == "failed" and prediction["output"] is None
    assert prediction["error"].startswith("image_urls[0]: ")
    assert prediction["error"].endswith("(invalid_input_image)")
    assert prediction["logs"].startswith("started by ")


def test_a_prediction_that_reads_failed_has_its_failure_in_its_logs(
    server: InProcessServer, image_server: ImageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = server.worker.store
    fail = store.fail
    seen: list[list[str]] = []

    def failing(claim: Claim, *, code: str, message: str) -> bool:
        stored = fail(claim, code=code, message=message)
        # What a reader finds the moment the job reads failed.
        seen.append([line.message for line in server.services.store.logs(claim.job.id)])
        return stored

    monkeypatch.setattr(store, "fail", failing)
    prediction = created(
        server,
        {"input": model_input(image_input=[image_server.url("/missing.png")])},
        headers={"Prefer": "wait=20"},
    )
    assert prediction["status"] == "failed"
    [lines] = seen
    assert any(line.startswith("failed: ") for line in lines), lines


def test_image_search_asks_for_web_search(server: InProcessServer) -> None:
    for asked in ({"image_search": True}, {"google_search": True}):
        prediction = created(server, {"input": model_input(**asked)}, headers={"Prefer": "wait=20"})
        assert prediction["input"]["google_search"] is True
        assert "image_search" not in prediction["input"]
        # The fake engine has no web search: the warning says it was asked for.
        assert any(w.startswith("enable_web_search:") for w in prediction["warnings"])


# --- keys and models --------------------------------------------------------------------------


def test_token_is_accepted_as_bearer_is(api: Api, server: InProcessServer) -> None:
    for scheme in ("Token", "token", "Bearer"):
        prediction = created(server, {"input": model_input()}, scheme=scheme)
        ended(api, server, prediction["id"])


def unauthorized(server: InProcessServer, headers: dict[str, str]) -> str:
    """The detail of a create's 401, in Replicate's problem form."""
    answer = server.http().post(
        f"{server.base}/replicate/v1/models/{MODEL}/predictions",
        json={"input": model_input()},
        headers=headers,
    )
    body = problem(answer, 401)
    assert set(body) == {"title", "detail", "status"} and body["title"] == "Unauthorized"
    assert answer.headers["www-authenticate"] == "Bearer"
    return str(body["detail"])


@pytest.mark.parametrize("header", ["Key {key}", "Basic {key}", "Bearer", "Token", None])
def test_other_schemes_and_no_key_are_401_naming_bearer(
    server: InProcessServer, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header.format(key=server.key)}
    detail = unauthorized(server, headers)
    assert "'Authorization: Bearer <key>'" in detail and "Token" in detail


@pytest.mark.parametrize("scheme", ["Bearer", "Token"])
def test_an_unknown_key_is_401(server: InProcessServer, scheme: str) -> None:
    detail = unauthorized(server, {"Authorization": f"{scheme} rt_nope"})
    assert detail.startswith("invalid or revoked API key")


def test_every_route_needs_a_key(server: InProcessServer) -> None:
    base = f"{server.base}/replicate/v1"
    some = str(uuid.uuid4())
    for method, path in [
        ("GET", f"/predictions/{some}"),
        ("POST", f"/predictions/{some}/cancel"),
        ("GET", "/predictions"),
        ("GET", f"/predictions/{some}/stream"),
        ("GET", "/webhooks/default/secret"),
    ]:
        problem(server.http().request(method, base + path), 401)


@pytest.mark.parametrize("model", ["google/nano-banana", "google/nano-banana-2-pro", "acme/x"])
def test_an_unknown_model_is_404_naming_the_served_ones(
    server: InProcessServer, model: str
) -> None:
    body = problem(create(server, {"input": model_input()}, model=model), 404)
    assert body["detail"] == f"model {model!r} not found; this server serves: {MODEL}"


def test_unknown_routes_and_wrong_methods_are_in_replicates_form(server: InProcessServer) -> None:
    base = f"{server.base}/replicate/v1"
    problem(server.http().get(f"{base}/nothing", headers=auth(server)), 404)
    problem(server.http().get(f"{base}/models/{MODEL}/predictions/x", headers=auth(server)), 404)
    wrong = server.http().delete(f"{base}/predictions", headers=auth(server))
    assert problem(wrong, 405)["title"] == "Method Not Allowed"
    problem(server.http().get(f"{base}/models/{MODEL}/predictions", headers=auth(server)), 405)


# --- 422 --------------------------------------------------------------------------------------


def test_every_bad_field_is_one_422_in_replicates_form(server: InProcessServer) -> None:
    answer = create(
        server,
        {
            "input": {
                "prompt": "",
                "image_input": ["ftp://example.com/a.png"],
                "aspect_ratio": "8:1",
                "image_urls": [IMAGE],
            },
            "webhook_events_filter": ["start"],
            "colour": "blue",
        },
    )
    fields = invalid_fields(answer)
    assert set(fields) == {
        "input.prompt",
        "input.image_input[0]",
        "input.aspect_ratio",
        "input.image_urls",
        "webhook_events_filter",
        "colour",
    }
    assert "image_input" in fields["input.image_urls"]["description"]
    assert "8:1" in fields["input.aspect_ratio"]["description"]
    assert "match_input_image" in fields["input.aspect_ratio"]["description"]
    assert "completed" in fields["webhook_events_filter"]["description"]
    assert "`input`" in fields["colour"]["description"]


@pytest.mark.parametrize("events", [["bogus"], ["completed", "bogus"], "completed", [1], []])
def test_a_bad_webhook_events_filter_is_named(server: InProcessServer, events: Any) -> None:
    fields = invalid_fields(
        create(server, {"input": model_input(), "webhook_events_filter": events})
    )
    assert list(fields) == ["webhook_events_filter"]


@pytest.mark.parametrize("events", [[{}], [["completed"]], [None, "completed"]])
def test_a_webhook_events_filter_of_objects_is_a_422(server: InProcessServer, events: Any) -> None:
    fields = invalid_fields(
        create(server, {"input": model_input(), "webhook_events_filter": events})
    )
    assert list(fields) == ["webhook_events_filter"]


@pytest.mark.parametrize(
    "events", [["completed"], ["start", "completed"], ["start", "output", "logs", "completed"]]
)
def test_a_filter_with_completed_is_accepted(
    api: Api, server: InProcessServer, events: list[str]
) -> None:
    prediction = created(server, {"input": model_input(), "webhook_events_filter": events})
    ended(api, server, prediction["id"])


def test_the_stream_flag_is_taken_every_prediction_has_a_stream(
    api: Api, server: InProcessServer
) -> None:
    prediction = created(server, {"input": model_input(), "stream": True})
    assert prediction["urls"]["stream"].endswith(f"/predictions/{prediction['id']}/stream")
    ended(api, server, prediction["id"])


def test_the_contracts_field_names_are_refused_pointing_to_replicates(
    server: InProcessServer,
) -> None:
    answer = create(
        server,
        {"input": {"prompt": "x", "image_urls": [IMAGE], "enable_web_search": True}},
    )
    fields = invalid_fields(answer)
    assert set(fields) == {"input.image_urls", "input.enable_web_search", "input.image_input"}
    assert fields["input.image_urls"]["description"] == (
        "unknown field: Replicate's name is image_input"
    )
    assert fields["input.image_input"]["type"] == "missing"


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b"[1, 2]", "body"),
        (b'"input"', "body"),
        (b"not json", "body"),
        (b'{"input": [1]}', "input"),
        (b'{"input": null}', "input"),
        (b'{"input": "make it blue"}', "input"),
    ],
)
def test_a_body_or_input_that_is_no_object_is_a_422(
    server: InProcessServer, content: bytes, field: str
) -> None:
    answer = server.http().post(
        f"{server.base}/replicate/v1/models/{MODEL}/predictions",
        content=content,
        headers={**auth(server), "Content-Type": "application/json"},
    )
    assert list(invalid_fields(answer)) == [field]


def test_a_missing_input_names_its_required_fields(server: InProcessServer) -> None:
    fields = invalid_fields(create(server, {}))
    assert set(fields) == {"input.prompt", "input.image_input"}
    assert {f["type"] for f in fields.values()} == {"missing"}


@pytest.mark.parametrize("webhook", [5, ["http://example.com"]])
def test_a_webhook_that_is_no_string_is_a_422(server: InProcessServer, webhook: Any) -> None:
    fields = invalid_fields(create(server, {"input": model_input(), "webhook": webhook}))
    assert list(fields) == ["webhook"]


@pytest.mark.parametrize("webhook", ["ftp://hooks.example.com/a", "http://10.0.0.1/hook"])
def test_a_bad_webhook_url_is_named_webhook(server: InProcessServer, webhook: str) -> None:
    fields = invalid_fields(create(server, {"input": model_input(), "webhook": webhook}))
    assert list(fields) == ["webhook"]


def test_a_bad_webhook_url_is_refused(server: InProcessServer) -> None:
    for webhook in ("ftp://hooks.example.com/a", "http://10.0.0.1/hook", "nope"):
        fields = invalid_fields(create(server, {"input": model_input(), "webhook": webhook}))
        [name] = fields
        assert name.endswith("webhook")


# --- get, list, cancel ------------------------------------------------------------------------


def test_get_of_an_unknown_or_another_keys_prediction_is_404(
    server: InProcessServer, second_api: Api
) -> None:
    unknown = str(uuid.uuid4())
    assert (
        problem(get(server, unknown), 404)["detail"] == f"request {unknown} not found (or expired)"
    )
    theirs = second_api.submit_ok({"prompt": "theirs", "image_urls": [IMAGE], "resolution": "0.5K"})
    problem(get(server, theirs), 404)
    problem(cancel(server, theirs), 404)
    problem(cancel(server, unknown), 404)
    assert second_api.wait(theirs)["status"] == "succeeded"


def test_the_list_is_newest_first_without_inputs(api: Api, server: InProcessServer) -> None:
    ids = [created(server, {"input": model_input(prompt=f"list {n}")})["id"] for n in range(3)]
    page = server.http().get(f"{server.base}/replicate/v1/predictions", headers=auth(server))
    assert page.status_code == 200, page.text
    listed = page.json()
    assert set(listed) == {"results", "next", "previous"} and listed["previous"] is None
    assert [p["id"] for p in listed["results"][:3]] == ids[::-1]
    for prediction in listed["results"]:
        assert "input" not in prediction and prediction["model"] == MODEL
    for prediction_id in ids:
        ended(api, server, prediction_id)


@pytest.mark.parametrize("cursor", ["abc", "-1", "1.5", "9" * 20, ""])
def test_a_bad_cursor_is_a_422(server: InProcessServer, cursor: str) -> None:
    answer = server.http().get(
        f"{server.base}/replicate/v1/predictions", params={"cursor": cursor}, headers=auth(server)
    )
    [name] = invalid_fields(answer)
    assert name.endswith("cursor")


def test_cancel_of_a_queued_prediction_is_canceled(api: Api, server: InProcessServer) -> None:
    with server.held_job(api):
        prediction = created(server, {"input": model_input()})
        answer = cancel(server, prediction["id"])
        assert answer.status_code == 200, answer.text
        canceled = answer.json()
        assert canceled["id"] == prediction["id"] and canceled["status"] == "canceled"
        assert canceled["completed_at"] and canceled["output"] is None
        assert canceled["input"] == prediction["input"]
        # Again: the same.
        assert cancel(server, prediction["id"]).json()["status"] == "canceled"
        assert get(server, prediction["id"]).json()["status"] == "canceled"


def test_cancel_of_a_running_prediction_leaves_it_processing(
    api: Api, server: InProcessServer
) -> None:
    with server.held_job(api) as running:
        answer = cancel(server, running)
        assert answer.status_code == 200 and answer.json()["status"] == "processing"
    assert ended(api, server, running)["status"] == "succeeded"


def test_cancel_of_an_ended_prediction_leaves_it_as_it_ended(
    api: Api, server: InProcessServer
) -> None:
    prediction = created(server, {"input": model_input()}, headers={"Prefer": "wait=20"})
    assert prediction["status"] == "succeeded"
    assert cancel(server, prediction["id"]).json()["status"] == "succeeded"


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    """A server without a worker: its predictions stay `starting`."""
    with in_process_server(tmp_path_factory.mktemp("replicate-idle") / "data", worker=False) as s:
        yield s


def test_the_next_cursor_url_reads_the_next_page(idle: InProcessServer) -> None:
    ids = [created(idle, {"input": model_input(prompt=f"page {n}")})["id"] for n in range(101)]
    first = idle.http().get(f"{idle.base}/replicate/v1/predictions", headers=auth(idle)).json()
    assert [p["id"] for p in first["results"]] == ids[:0:-1]
    assert first["next"].startswith(f"{idle.base}/replicate/v1/predictions?cursor=")
    second = idle.http().get(first["next"], headers=auth(idle))
    assert second.status_code == 200, second.text
    assert [p["id"] for p in second.json()["results"]] == [ids[0]]
    assert second.json()["next"] is None and second.json()["previous"] is None


# --- stream -----------------------------------------------------------------------------------


def test_the_stream_sends_logs_then_the_output_then_done(api: Api, server: InProcessServer) -> None:
    prediction = created(server, {"input": model_input(num_images=2)})
    events = stream_events(server, prediction["id"])
    names = [name for name, _ in events]
    ended_prediction = get(server, prediction["id"]).json()
    logs = ended_prediction["logs"].splitlines()
    assert names == ["logs"] * len(logs) + ["output", "output", "done"]
    assert [data for name, data in events if name == "logs"] == logs
    outputs = [data for name, data in events if name == "output"]
    assert [unsigned(url) for url in outputs] == [unsigned(u) for u in ended_prediction["output"]]
    assert json.loads(events[-1][1]) == {}
    assert api.download(outputs[0])[1].size == (512, 512)


def test_the_stream_of_a_failed_prediction_ends_with_its_error(
    server: InProcessServer, image_server: ImageServer
) -> None:
    prediction = created(
        server, {"input": model_input(image_input=[image_server.url("/missing.png")])}
    )
    events = stream_events(server, prediction["id"])
    assert [name for name, _ in events][-2:] == ["error", "done"]
    assert "output" not in [name for name, _ in events]
    assert events[-2][1] == get(server, prediction["id"]).json()["error"]
    assert json.loads(events[-1][1]) == {"reason": "error"}


def test_the_stream_of_a_canceled_prediction_ends_canceled(
    api: Api, server: InProcessServer
) -> None:
    with server.held_job(api):
        prediction = created(server, {"input": model_input()})
        assert cancel(server, prediction["id"]).json()["status"] == "canceled"
    events = stream_events(server, prediction["id"])
    assert events[-1] == ("done", json.dumps({"reason": "canceled"}))
    assert "output" not in [name for name, _ in events]


def test_the_stream_of_an_unknown_prediction_is_404(server: InProcessServer) -> None:
    answer = server.http().get(
        f"{server.base}/replicate/v1/predictions/{uuid.uuid4()}/stream", headers=auth(server)
    )
    problem(answer, 404)


# --- webhooks ---------------------------------------------------------------------------------


def test_the_webhook_secret_is_the_keys(api: Api, server: InProcessServer) -> None:
    answer = server.http().get(
        f"{server.base}/replicate/v1/webhooks/default/secret", headers=auth(server, "Token")
    )
    assert answer.status_code == 200
    assert answer.json() == {"key": secret(api)}


def test_the_webhook_is_the_prediction_and_validates_with_replicates_client(
    api: Api, server: InProcessServer
) -> None:
    key = (
        server.http()
        .get(f"{server.base}/replicate/v1/webhooks/default/secret", headers=auth(server))
        .json()["key"]
    )
    with webhook_receiver(key) as receiver:
        prediction = created(server, {"input": model_input(), "webhook": receiver.url})
        receiver.wait_for(lambda got: len(got) == 1)
    [got] = receiver.received
    assert got.verified is not None
    signing = WebhookSigningSecret(key=key)
    replicate.webhooks.validate(headers=got.headers, body=got.body.decode(), secret=signing)
    with pytest.raises(InvalidSignatureError):
        tampered = got.body.decode().replace("succeeded", "failed")
        replicate.webhooks.validate(headers=got.headers, body=tampered, secret=signing)
    body = json.loads(got.body)
    assert body["id"] == prediction["id"] and body["status"] == "succeeded"
    assert body["input"] == prediction["input"] and body["model"] == MODEL
    assert isinstance(body["output"], str) and api.download(body["output"])[1].size == (512, 512)
    assert body["metrics"]["predict_time"] >= 0 and body["logs"]
    now = get(server, prediction["id"]).json()
    assert {**body, "output": None} == {**now, "output": None}


def test_webhook_completed_is_taken_as_the_webhook(api: Api, server: InProcessServer) -> None:
    with webhook_receiver(secret(api)) as receiver:
        prediction = created(
            server,
            {
                "input": model_input(),
                "webhook_completed": receiver.url,
                "webhook_events_filter": ["completed"],
            },
        )
        receiver.wait_for(lambda got: len(got) == 1)
    [got] = receiver.received
    assert got.verified is not None and got.verified["id"] == prediction["id"]


def test_two_webhook_urls_are_a_422(server: InProcessServer) -> None:
    answer = create(
        server,
        {
            "input": model_input(),
            "webhook": "https://hooks.example.com/a",
            "webhook_completed": "https://hooks.example.com/b",
        },
    )
    assert list(invalid_fields(answer)) == ["webhook_completed"]


# --- versions, idempotency and the other surfaces ---------------------------------------------


def version_create(server: InProcessServer, payload: Any) -> httpx.Response:
    return server.http().post(
        f"{server.base}/replicate/v1/predictions", json=payload, headers=auth(server)
    )


def test_a_prediction_of_the_models_version(api: Api, server: InProcessServer) -> None:
    version = created(server, {"input": model_input()}, headers={"Prefer": "wait=20"})["version"]
    for named in (version, f"{MODEL}:{version}"):
        answer = version_create(server, {"version": named, "input": model_input()})
        assert answer.status_code == 201, answer.text
        assert answer.json()["model"] == MODEL and answer.json()["version"] == version
        ended(api, server, answer.json()["id"])
    for unknown in ("0" * 64, f"acme/x:{version}"):
        body = problem(version_create(server, {"version": unknown, "input": model_input()}), 404)
        assert f"{MODEL}:{version}" in body["detail"]
    assert list(invalid_fields(version_create(server, {"input": model_input()}))) == ["version"]


def test_an_idempotency_key_replays_the_prediction(api: Api, server: InProcessServer) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = create(server, {"input": model_input(prompt="idempotent")}, headers=key)
    again = create(server, {"input": model_input(prompt="idempotent")}, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = create(server, {"input": model_input(prompt="another")}, headers=key)
    assert first.json()["id"] in problem(other, 409)["detail"]
    # The same input through fal's surface: refused in fal's form (a 422 there: fal's
    # clients retry a 409).
    fal = server.http().post(
        f"{server.base}/fal/fal-ai/nano-banana-2/edit",
        json={"prompt": "idempotent", "image_urls": [IMAGE], "resolution": "0.5K"},
        headers={"Authorization": f"Key {server.key}", **key},
    )
    assert fal.status_code == 422 and set(fal.json()) == {"detail"}
    assert first.json()["id"] in fal.json()["detail"]
    ended(api, server, first.json()["id"])


def test_a_prediction_is_read_through_every_surface(api: Api, server: InProcessServer) -> None:
    prediction = created(server, {"input": model_input()}, headers={"Prefer": "wait=20"})
    result = api.result(prediction["id"]).json()
    assert result["status"] == "succeeded"
    assert unsigned(result["output"]["image"]) == unsigned(prediction["output"])
    fal = server.http().get(
        f"{server.base}/fal/fal-ai/nano-banana-2/requests/{prediction['id']}",
        headers={"Authorization": f"Key {server.key}"},
    )
    assert fal.status_code == 200
    assert unsigned(fal.json()["images"][0]["url"]) == unsigned(prediction["output"])


def test_a_contract_request_is_a_prediction(api: Api, server: InProcessServer) -> None:
    request_id = api.submit_ok(
        {"prompt": "contract", "image_urls": [IMAGE], "resolution": "0.5K", "output_format": "jpeg"}
    )
    api.wait(request_id)
    prediction = get(server, request_id).json()
    assert prediction["status"] == "succeeded" and prediction["model"] == MODEL
    assert prediction["input"]["image_input"] == [IMAGE]
    assert prediction["input"]["output_format"] == "jpg"
