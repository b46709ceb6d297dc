"""Request handles, events with logs, input payloads, cancel-on-timeout and the module-level
shortcuts, against the in-process server (e2e/test_client_sdk.py: the same over HTTP, sync
and async)."""

from __future__ import annotations

import inspect
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

import retouch.client
from client_support import SMALL, RecordingTransport
from e2e_support import Api, ImageServer, make_image
from retouch.client import (
    DEFAULT_ENDPOINT,
    Client,
    Completed,
    Event,
    InProgress,
    Queued,
    RequestHandle,
    shortcuts,
    to_data_uri,
)
from retouch.client import errors as sdk_errors

from ..inprocess import InProcessServer


@pytest.fixture
def client(api: Api) -> Iterator[Client]:
    with Client(api.base, api.key, http_client=api.http) as opened:
        yield opened


def payload(image_server: ImageServer, **fields: object) -> dict[str, object]:
    return {
        "prompt": "make it snow",
        "image_urls": [image_server.url("/square.png")],
        **SMALL,
        **fields,
    }


@pytest.fixture
def polling(api: Api) -> Iterator[Client]:
    """A client that polls: the in-process transport (a TestClient) reads a whole response
    before returning it, so a stream would block behind a held job until it ends."""
    with Client(api.base, api.key, http_client=api.http, use_stream=False) as opened:
        yield opened


def logged(events: list[Event]) -> list[str]:
    return [line.message for event in events for line in event.logs]


def test_polled_events_queue_then_progress_then_one_completed_with_every_log_line_once(
    polling: Client, server: InProcessServer, api: Api, image_server: ImageServer
) -> None:
    with server.held_job(api):
        handle = polling.submit(DEFAULT_ENDPOINT, input=payload(image_server))
        events = handle.iter_events(with_logs=True, timeout=60)
        first = next(events)
    rest = list(events)
    result = handle.result(with_logs=True)
    assert isinstance(handle, RequestHandle) and handle.submission is not None
    assert handle.submission.request_id == handle.request_id
    assert isinstance(first, Queued) and first.position == 0
    assert isinstance(rest[-1], Completed) and rest[-1].result.ok
    assert all(isinstance(event, InProgress) for event in rest[:-1])
    assert result.logs and logged([first, *rest]) == [line.message for line in result.logs]
    assert result.ok and rest[-1].result.request_id == handle.request_id


def test_streamed_events_end_in_one_completed_with_every_log_line_once(
    client: Client, image_server: ImageServer
) -> None:
    handle = client.submit(input=payload(image_server))
    events = list(handle.iter_events(with_logs=True, timeout=60))
    assert isinstance(events[-1], Completed) and events[-1].result.ok
    assert not any(isinstance(event, Completed) for event in events[:-1])
    logs = handle.result(with_logs=True).logs
    assert logs and logged(events) == [line.message for line in logs]


def test_a_handle_for_a_known_id_waits_cancels_and_reads(
    polling: Client, api: Api, image_server: ImageServer, server: InProcessServer
) -> None:
    client = polling
    with server.held_job(api):
        queued = client.submit(input=payload(image_server))
        handle = client.get(queued.request_id)
        assert handle.submission is None and repr(handle) == f"RequestHandle('{handle.request_id}')"
        assert handle.status().status == "in_queue"
        assert handle.cancel().cancelled
    events = list(handle.iter_events())
    assert len(events) == 1 and isinstance(events[0], Completed)
    assert events[0].result.status == "cancelled"
    with pytest.raises(sdk_errors.JobCancelled):
        handle.wait()
    finished = client.submit(input=payload(image_server))
    assert client.get(finished.request_id).wait(timeout=60).ok


def test_run_takes_the_input_json_as_is_and_uploads_local_images(
    server: InProcessServer, api: Api, image_server: ImageServer, tmp_path: Path
) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(make_image(64, 48))
    drawn = Image.new("RGB", (40, 30), "red")
    # As the API page writes it, then local images put in.
    body = json.loads('{"prompt": "make it snow", "num_images": 1, "resolution": "0.5K"}')
    body["image_urls"] = [image_server.url("/square.png"), str(photo), drawn, make_image(32, 32)]
    transport = RecordingTransport(server.transport)
    with Client(api.base, api.key, http_client=server.http(transport)) as client:
        result = client.run(DEFAULT_ENDPOINT, input=body, with_logs=True, timeout=60)
    assert result.ok and result.logs
    assert len(transport.paths("/v1/files")) == 3  # the URL went as it was
    # The keyword form, and a data URI made by the SDK.
    with Client(api.base, api.key, http_client=api.http) as client:
        made = client.run(prompt="x", image_urls=[to_data_uri(drawn)], **SMALL, timeout=60)
    assert made.ok and made.logs is None


def test_bad_calls_are_refused_before_anything_is_sent(
    server: InProcessServer, api: Api, image_server: ImageServer, tmp_path: Path
) -> None:
    transport = RecordingTransport(server.transport)
    with Client(api.base, api.key, http_client=server.http(transport)) as client:
        # The 0.1 form, run(prompt, image_urls), points to edit().
        with pytest.raises(ValueError, match=r"client\.edit\(prompt, image_urls\)"):
            client.run("make it snow", ["photo.jpg"])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"client\.edit\(prompt, image_urls\)"):
            client.run("snow", ["photo.jpg"])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="not an endpoint id"):
            client.run("make it snow", {"prompt": "x"})
        for not_an_id in ("../webhooks/secret", "a//b", "", "/", "a/./b"):
            with pytest.raises(sdk_errors.InvalidEndpointError, match="not an endpoint id"):
                client.submit(not_an_id, {"prompt": "x"})
        with pytest.raises(TypeError, match="prompt: given both"):
            client.submit(input={"prompt": "a", "image_urls": []}, prompt="b")
        with pytest.raises(TypeError, match="list of images"):
            client.edit("x", "photo.jpg")
        with pytest.raises(FileNotFoundError, match="no such file"):
            client.run(input=payload(image_server, image_urls=[str(tmp_path / "nope.png")]))
        # JSON the SDK need not understand goes to the server, which names the field.
        with pytest.raises(sdk_errors.InvalidInputError) as caught:
            client.run(input=payload(image_server, image_urls=[{"url": "x"}]))
        assert "image_urls" in caught.value.message
    assert [
        path for path in transport.paths("") if path != "/v1/models/google/nano-banana-2/edit"
    ] == []


def test_an_unknown_endpoint_of_any_depth_is_a_bad_request(
    client: Client, image_server: ImageServer
) -> None:
    with pytest.raises(sdk_errors.BadRequestError) as caught:
        client.run("acme/model/variant/edit", payload(image_server))
    assert caught.value.error_code == 400001 and "acme/model/variant/edit" in caught.value.message


def test_cancel_on_timeout_cancels_before_raising(
    polling: Client, api: Api, image_server: ImageServer, server: InProcessServer
) -> None:
    client = polling
    submitted: list[str] = []
    with server.held_job(api):
        with pytest.raises(sdk_errors.WaitTimeout) as caught:
            client.run(
                input=payload(image_server),
                timeout=0.3,
                cancel_on_timeout=True,
                on_submitted=lambda submission: submitted.append(submission.request_id),
            )
        late = caught.value
        assert isinstance(late, TimeoutError) and late.cancelled
        assert late.request_id == submitted[0] and "cancelled it" in late.message
        assert client.status(submitted[0]).status == "cancelled"
        # Off by default: the job goes on, and the error says how to resume.
        with pytest.raises(sdk_errors.WaitTimeout) as kept:
            client.run(input=payload(image_server), timeout=0.3)
        assert not kept.value.cancelled and "client.wait(" in kept.value.message
        assert "retouch wait" not in kept.value.message
        assert kept.value.request_id is not None
    assert client.wait(kept.value.request_id, timeout=60).ok


def test_errors_about_a_request_carry_its_id(client: Client) -> None:
    with pytest.raises(sdk_errors.NotFoundError) as caught:
        client.get("no-such-request").status()
    assert caught.value.request_id == "no-such-request"
    with pytest.raises(sdk_errors.NotFoundError) as waited:
        client.wait("no-such-request", timeout=5)
    assert waited.value.request_id == "no-such-request"


def test_upload_takes_a_pil_image_bytes_and_a_path(client: Client, tmp_path: Path) -> None:
    drawn = Image.new("RGBA", (30, 20), (0, 0, 255, 128))
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (50, 40)).save(path, "JPEG")
    uploads = [client.upload(drawn), client.upload(make_image(24, 16)), client.upload(path)]
    assert [(u.width, u.height, u.content_type) for u in uploads] == [
        (30, 20, "image/png"),
        (24, 16, "image/png"),
        (50, 40, "image/jpeg"),
    ]
    with pytest.raises(TypeError, match="not int"):
        client.upload(7)  # type: ignore[arg-type]


def test_module_level_shortcuts_use_one_default_client(
    client: Client, image_server: ImageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shortcuts, "_default", client)
    handle = retouch.client.submit(input=payload(image_server))
    assert isinstance(handle, RequestHandle) and handle.client is client
    assert retouch.client.get(handle.request_id).wait(timeout=60).ok
    assert retouch.client.run(input=payload(image_server), timeout=60).ok
    assert retouch.client.status(handle.request_id).status == "completed"
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    assert retouch.client.upload(buffer.getvalue()).width == 8


def test_the_default_client_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shortcuts, "_default", None)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("RETOUCH_CLIENT_CONFIG", raising=False)
    monkeypatch.setenv("RETOUCH_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("RETOUCH_API_KEY", "rtk_test")
    first = shortcuts.default_client()
    assert first is shortcuts.default_client() and first.base_url == "http://127.0.0.1:9"
    monkeypatch.setenv("RETOUCH_URL", "http://127.0.0.1:10")
    shortcuts.reset_default_client()
    assert shortcuts.default_client().base_url == "http://127.0.0.1:10"
    shortcuts.reset_default_client()
    monkeypatch.delenv("RETOUCH_API_KEY")
    with pytest.raises(sdk_errors.MissingApiKeyError):
        retouch.client.status("x")


def test_help_shows_each_method_as_it_is_called(client: Client) -> None:
    """Not the Core flow's signature (core, request id, a Flow return)."""
    handle = client.get("x")
    assert list(inspect.signature(handle.status).parameters) == ["with_logs"]
    assert inspect.signature(handle.wait).return_annotation == "models.Result"
    assert list(inspect.signature(client.status).parameters) == ["request_id", "with_logs"]
    assert list(inspect.signature(retouch.client.run).parameters)[:2] == ["endpoint", "input"]
    assert client.status.__doc__ and client.status.__name__ == "status"
