"""The Python SDK against the in-process server: typed results, waiting (event stream and
polling), typed errors, retries; and its configuration and policies, with no server or a
scripted one (see e2e/test_client_sdk.py for waits that time out mid-stream, and the async
client against a real server)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from client_support import (
    SMALL,
    STALL,
    BusyFirst,
    DropFirstSubmit,
    NoStreamRoute,
    RecordingTransport,
    Routes,
    ScriptedServer,
    sizes_of,
)
from e2e_support import Api, ImageServer, free_port, make_image
from retouch.client import (
    AsyncClient,
    CancelOutcome,
    Client,
    RetryPolicy,
    Status,
    Submission,
    resolve_config,
)
from retouch.client import errors as sdk_errors
from retouch.client.config import DEFAULT_URL

from ..inprocess import InProcessServer


@pytest.fixture
def client(api: Api) -> Iterator[Client]:
    with Client(api.base, api.key, http_client=api.http) as opened:
        yield opened


def test_sdk_imports_neither_torch_nor_server_modules_nor_pil() -> None:
    code = (
        "import sys, retouch.client, retouch.client.cli, retouch.client.webhooks\n"
        "heavy = ('torch', 'diffusers', 'fastapi', 'sqlalchemy', 'retouch.api',"
        " 'retouch.worker', 'retouch.engine', 'retouch.jobs', 'PIL', 'standardwebhooks')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_run_returns_a_typed_result_with_downloadable_images(
    client: Client, api: Api, image_server: ImageServer, tmp_path: Path
) -> None:
    events: list[str] = []
    submitted: list[Submission] = []

    def on_submitted(submission: Submission) -> None:
        # The id is handed over before waiting starts, and already names a job.
        assert api.status(submission.request_id).status_code == 200
        events.append("submitted")
        submitted.append(submission)

    def on_update(status: Status) -> None:
        events.append(f"update:{status.status}")

    result = client.edit(
        "make it snow",
        [image_server.url("/square.png")],
        num_images=2,
        output_format="webp",
        seed=7,
        on_submitted=on_submitted,
        on_update=on_update,
        resolution="0.5K",
        aspect_ratio="1:1",
    )
    assert events[0] == "submitted" and len(submitted) == 1
    assert result.request_id == submitted[0].request_id
    assert submitted[0].status_url and submitted[0].status_url.endswith("/status")
    assert result.ok and result.status == "succeeded" and result.error is None
    assert len(result.images) == 2 and result.output and result.output.image is None
    assert isinstance(result.created_at, datetime) and isinstance(result.finished_at, datetime)
    assert result.model and result.model.preview is True
    assert result.attempts == 1 and result.generation is not None
    # Extra fields a server adds stay readable.
    assert result.model_extra is not None

    files = client.download(result, tmp_path)
    assert [path.name for path in files] == [f"{result.request_id}-{n}.webp" for n in (0, 1)]
    assert sizes_of(files) == [("WEBP", (512, 512))] * 2


def test_run_uploads_local_files(client: Client, tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(make_image(320, 240))
    uploaded = client.upload(photo)
    assert uploaded.url.startswith(client.base_url) and (uploaded.width, uploaded.height) == (
        320,
        240,
    )
    assert uploaded.size == photo.stat().st_size

    uploads: list[str] = []
    result = client.edit(
        "x", [photo], on_upload=lambda upload: uploads.append(upload.url), resolution="0.5K"
    )
    assert result.ok and len(uploads) == 1
    # 320×240 is 4:3.
    assert sizes_of(client.download(result, tmp_path)) == [("PNG", (600, 448))]

    with pytest.raises(FileNotFoundError, match=r"nope\.png"):
        client.edit("x", [str(tmp_path / "nope.png")])


def test_typed_errors(api: Api, client: Client, image_server: ImageServer) -> None:
    with (
        Client(api.base, "rtk_bad_key", http_client=api.http) as bad,
        pytest.raises(sdk_errors.AuthenticationError) as auth,
    ):
        bad.status("whatever")
    assert auth.value.status_code == 401 and auth.value.error_code == 401001

    with pytest.raises(sdk_errors.InvalidInputError) as invalid:
        client.edit("x", [image_server.url("/square.png")], num_images=9)
    assert invalid.value.status_code == 422 and invalid.value.error_code == 422001
    assert [item["field"] for item in invalid.value.detail] == ["num_images"]

    calls: list[Callable[[str], object]] = [
        client.status,
        client.result,
        client.cancel,
        client.wait,
    ]
    for call in calls:
        with pytest.raises(sdk_errors.NotFoundError) as missing:
            call("no-such-request")
        assert missing.value.error_code == 404001


def test_failed_job_raises_job_failed_with_the_result(
    client: Client, image_server: ImageServer
) -> None:
    with pytest.raises(sdk_errors.JobFailed) as caught:
        client.edit("x", [image_server.url("/missing.png")], **SMALL)
    failure = caught.value
    assert failure.result.status == "failed" and failure.request_id == failure.result.request_id
    assert failure.error_code == failure.result.error.code if failure.result.error else False
    assert "image_urls[0]" in failure.message
    # result() itself never raises for a failed job.
    assert client.result(failure.request_id).status == "failed"


def test_cancelled_job_raises_job_cancelled(
    client: Client, api: Api, image_server: ImageServer, server: InProcessServer
) -> None:
    with server.held_job(api):
        queued = client.submit(prompt="x", image_urls=[image_server.url("/square.png")], **SMALL)
        outcome = client.cancel(queued.request_id)
    assert outcome.cancelled and outcome.status == "cancelled"
    with pytest.raises(sdk_errors.JobCancelled) as caught:
        client.wait(queued.request_id)
    assert caught.value.request_id == queued.request_id


def test_submit_retried_after_a_dropped_connection_creates_one_job(
    server: InProcessServer, api: Api, image_server: ImageServer
) -> None:
    transport = DropFirstSubmit(server.transport)
    with Client(api.base, api.key, http_client=server.http(transport)) as client:
        result = client.edit("x", [image_server.url("/square.png")], **SMALL)
    assert result.ok
    # The first attempt created the job; the retry, with the same idempotency key, was
    # answered with that same job.
    first, retried = transport.dropped[0], transport.answers[0]
    assert len(transport.paths("/edit")) == 2
    assert first.json()["request_id"] == retried.json()["request_id"] == result.request_id
    assert retried.headers.get("idempotent-replayed") == "true"


def test_submit_without_idempotency_key_is_not_retried(
    server: InProcessServer, api: Api, image_server: ImageServer
) -> None:
    transport = DropFirstSubmit(server.transport)
    with Client(api.base, api.key, http_client=server.http(transport)) as client:
        with pytest.raises(sdk_errors.ConnectionError, match="idempotency key"):
            client.submit(prompt="x", image_urls=[image_server.url("/square.png")], **SMALL)
        assert len(transport.paths("/edit")) == 1
        # The job the client never heard of still runs.
        client.wait(transport.dropped[0].json()["request_id"], timeout=60)


def test_reads_are_retried_on_503_and_submits_without_a_key_are_not(
    server: InProcessServer, api: Api, image_server: ImageServer
) -> None:
    busy = BusyFirst("/status", count=2, inner=server.transport)
    with Client(api.base, api.key, http_client=server.http(busy)) as client:
        with pytest.raises(sdk_errors.NotFoundError):
            client.status("no-such-request")
        assert busy.refused == 2 and len(busy.paths("/status")) == 3

    busy = BusyFirst("/edit", inner=server.transport)
    with Client(api.base, api.key, http_client=server.http(busy)) as client:
        with pytest.raises(sdk_errors.OverloadedError) as overloaded:
            client.submit(prompt="x", image_urls=[image_server.url("/square.png")], **SMALL)
        assert overloaded.value.retry_after == 0 and len(busy.paths("/edit")) == 1


def test_unreachable_server_raises_connection_error_after_retries() -> None:
    transport = RecordingTransport()
    url = f"http://127.0.0.1:{free_port()}"
    http = httpx.Client(transport=transport)
    with (
        Client(url, "rtk_x", max_retries=2, http_client=http) as client,
        pytest.raises(sdk_errors.ConnectionError, match="after 3 attempts"),
    ):
        client.status("abc")
    assert len(transport.calls) == 3


def test_polling_when_the_stream_is_not_used(
    server: InProcessServer, api: Api, image_server: ImageServer
) -> None:
    transport = RecordingTransport(server.transport)
    http = server.http(transport)
    with Client(api.base, api.key, use_stream=False, http_client=http) as client:
        seen: list[Status] = []
        result = client.edit("x", [image_server.url("/square.png")], on_update=seen.append, **SMALL)
    assert result.ok and seen and seen[-1].status == "completed"
    assert not transport.paths("/stream") and transport.paths("/status")


def test_a_server_without_the_stream_route_is_polled_and_remembered(
    server: InProcessServer, api: Api, image_server: ImageServer
) -> None:
    transport = NoStreamRoute(server.transport)
    with Client(api.base, api.key, http_client=server.http(transport)) as client:
        for _ in range(2):
            assert client.edit("x", [image_server.url("/square.png")], **SMALL).ok
    assert len(transport.paths("/stream")) == 1
    assert len(transport.paths("/result")) == 2


def test_wait_follows_the_event_stream(
    server: InProcessServer, api: Api, image_server: ImageServer
) -> None:
    transport = RecordingTransport(server.transport)
    updates: list[Status] = []
    with Client(api.base, api.key, http_client=server.http(transport)) as client:
        result = client.edit("x", [image_server.url("/square.png")], on_update=updates.append)
    assert result.ok and result.images
    # The stream carried the status changes and the result: no polling, no result fetch.
    assert len(transport.paths("/stream")) == 1
    assert not transport.paths("/status") and not transport.paths("/result")
    assert updates, "no status event arrived"


def test_list_requests_and_webhook_secret(client: Client, image_server: ImageServer) -> None:
    submission = client.submit(prompt="x", image_urls=[image_server.url("/square.png")], **SMALL)
    page = client.list_requests(limit=5)
    # A limit of 0 reaches the server, which refuses it (it is not taken for "no limit").
    with pytest.raises(sdk_errors.InvalidInputError) as zero:
        client.list_requests(limit=0)
    assert [item["field"] for item in zero.value.detail] == ["query.limit"]
    assert page.requests[0].request_id == submission.request_id
    assert page.requests[0].endpoint == "google/nano-banana-2/edit"
    client.wait(submission.request_id, timeout=60)

    secret = client.webhook_secret()
    assert secret.startswith("whsec_") and client.webhook_secret() == secret
    rotated = client.webhook_secret(rotate=True)
    assert rotated != secret and client.webhook_secret() == rotated


# Configuration and policies (no server).


def test_config_resolution_order(tmp_path: Path) -> None:
    config = tmp_path / "client.toml"
    config.write_text('url = "http://files.example:1/"\napi_key = "rtk_file"\n')
    env = {"RETOUCH_CLIENT_CONFIG": str(config)}
    assert resolve_config(env=env) == resolve_config("http://files.example:1", "rtk_file", env={})
    both = {**env, "RETOUCH_URL": "http://env.example", "RETOUCH_API_KEY": "rtk_env"}
    chosen = resolve_config(env=both)
    assert (chosen.url, chosen.api_key) == ("http://env.example", "rtk_env")
    chosen = resolve_config("https://arg.example", "rtk_arg", env=both)
    assert (chosen.url, chosen.api_key) == ("https://arg.example", "rtk_arg")

    xdg = tmp_path / "xdg" / "retouch" / "client.toml"
    xdg.parent.mkdir(parents=True)
    xdg.write_text('api_key = "rtk_xdg"\n')
    chosen = resolve_config(env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert (chosen.url, chosen.api_key) == (DEFAULT_URL, "rtk_xdg")


def test_config_errors(tmp_path: Path) -> None:
    empty = {"XDG_CONFIG_HOME": str(tmp_path)}
    with pytest.raises(sdk_errors.MissingApiKeyError) as missing:
        resolve_config(env=empty)
    for way in ("--api-key", "RETOUCH_API_KEY", str(tmp_path / "retouch" / "client.toml")):
        assert way in missing.value.message
    typo = tmp_path / "typo.toml"
    typo.write_text('apikey = "rtk_x"\n')
    with pytest.raises(sdk_errors.ConfigurationError, match="apikey"):
        resolve_config(env={"RETOUCH_CLIENT_CONFIG": str(typo)})
    with pytest.raises(sdk_errors.ConfigurationError, match="http"):
        resolve_config("localhost:8000", "rtk_x", env={})


def test_an_api_key_a_header_cannot_carry_is_a_configuration_error(tmp_path: Path) -> None:
    # httpx would raise UnicodeEncodeError (non-ASCII) or send a broken header (spaces).
    for key in ("rtk_é", "rtk_a b", "rtk_a\tb", "rtk_\x7f"):
        with pytest.raises(sdk_errors.InvalidApiKeyError) as caught:
            resolve_config("http://retouch.test", key, env={})
        assert isinstance(caught.value, sdk_errors.ConfigurationError)
        assert key not in caught.value.message and "--api-key" in caught.value.message
    with pytest.raises(sdk_errors.InvalidApiKeyError, match="RETOUCH_API_KEY"):
        resolve_config(env={"RETOUCH_API_KEY": "rtk_ü", "XDG_CONFIG_HOME": str(tmp_path)})
    with pytest.raises(sdk_errors.InvalidApiKeyError):
        Client("http://retouch.test", "clé")
    # Surrounding whitespace (a pasted newline) is dropped, as before.
    assert resolve_config("http://retouch.test", " rtk_ok\n", env={}).api_key == "rtk_ok"


def test_retry_policy_honours_retry_after_and_its_bounds() -> None:
    policy = RetryPolicy(max_retries=2, backoff=0.1, max_backoff=1.0, max_retry_after=10)
    first = policy.delay(0)
    assert first is not None and 0.05 <= first <= 0.1
    assert policy.delay(0, retry_after=3) == 3
    assert policy.delay(0, retry_after=11) is None
    assert policy.delay(2) is None


def test_result_helpers() -> None:
    from retouch.client import Result

    body: dict[str, Any] = {
        "request_id": "r",
        "status": "succeeded",
        "output": {"images": ["http://a/1.png"], "image": "http://a/1.png"},
        "has_nsfw_concepts": [False, True],
        "something_new": {"x": 1},
    }
    result = Result.model_validate(body)
    assert result.ok and result.finished and result.images == ["http://a/1.png"]
    assert result.withheld == 1 and result.model_extra == {"something_new": {"x": 1}}
    assert not Result(request_id="r", status="in_queue").images

    # A repeated cancel may answer not_cancellable for a job that is cancelled: it is.
    again = {"request_id": "r", "status": "cancelled", "outcome": "not_cancellable"}
    assert CancelOutcome.model_validate(again).cancelled
    running = {"request_id": "r", "status": "in_progress", "outcome": "not_cancellable"}
    assert not CancelOutcome.model_validate(running).cancelled


# Waiting against a scripted server (httpx.MockTransport): timings a real server cannot
# produce on demand.


def _status(state: str, **extra: Any) -> dict[str, Any]:
    return {"request_id": "r1", "status": state, **extra}


def _finished_result() -> dict[str, Any]:
    return {"request_id": "r1", "status": "succeeded", "output": {"images": ["http://x/1.png"]}}


def test_keep_alives_do_not_stretch_a_wait_past_its_timeout() -> None:
    def keep_alives() -> Iterator[bytes]:
        yield b'event: status\ndata: {"request_id": "r1", "status": "in_queue"}\n\n'
        for _ in range(200):  # a server that never finishes, but keeps the stream alive
            time.sleep(0.02)
            yield b": keep-alive\n\n"

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/requests/r1/stream"
        headers = {"content-type": "text/event-stream"}
        return httpx.Response(200, headers=headers, content=keep_alives())

    http = httpx.Client(transport=httpx.MockTransport(handler))
    started = time.monotonic()
    with (
        Client("http://retouch.test", "rtk_x", http_client=http) as client,
        pytest.raises(sdk_errors.WaitTimeout) as caught,
    ):
        client.wait("r1", timeout=0.3)
    assert time.monotonic() - started < 1.5
    assert caught.value.request_id == "r1" and caught.value.status
    assert caught.value.status.status == "in_queue"


def test_async_keep_alives_do_not_stretch_a_wait_past_its_timeout() -> None:
    async def keep_alives() -> AsyncIterator[bytes]:
        for _ in range(200):
            await asyncio.sleep(0.02)
            yield b": keep-alive\n\n"

    async def handler(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "text/event-stream"}
        return httpx.Response(200, headers=headers, content=keep_alives())

    async def main() -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with AsyncClient("http://retouch.test", "rtk_x", http_client=http) as client:
            with pytest.raises(sdk_errors.WaitTimeout):
                await client.wait("r1", timeout=0.3)

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started < 1.5


def test_a_dropped_stream_falls_back_to_polling_that_honours_retry_after() -> None:
    polls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path.rsplit("/", 1)[-1]
        if path == "stream":  # one event, then the connection ends without a result
            body = b'event: status\ndata: {"request_id": "r1", "status": "in_queue"}\n\n'
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
        if path == "status":
            polls.append(time.monotonic())
            if len(polls) == 1:
                return httpx.Response(
                    200, json=_status("in_progress"), headers={"Retry-After": "1"}
                )
            return httpx.Response(200, json=_status("completed"))
        assert path == "result"
        return httpx.Response(200, json=_finished_result())

    http = httpx.Client(transport=httpx.MockTransport(handler))
    updates: list[str] = []
    with Client("http://retouch.test", "rtk_x", http_client=http) as client:
        result = client.wait("r1", on_update=lambda status: updates.append(status.status))
    assert result.ok and result.images == ["http://x/1.png"]
    assert updates == ["in_queue", "in_progress", "completed"]
    assert len(polls) == 2 and polls[1] - polls[0] >= 1.0


def test_a_cancelled_async_wait_closes_its_stream() -> None:
    opened: list[httpx.Response] = []

    async def silence() -> AsyncIterator[bytes]:
        yield b": hello\n\n"
        await asyncio.sleep(30)
        yield b""

    async def handler(request: httpx.Request) -> httpx.Response:
        response = httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=silence()
        )
        opened.append(response)
        return response

    async def main() -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with AsyncClient("http://retouch.test", "rtk_x", http_client=http) as client:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.wait("r1"), timeout=0.2)

    asyncio.run(main())
    assert len(opened) == 1 and opened[0].is_closed


def test_an_idempotency_key_no_server_accepts_is_refused_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(202, json={"request_id": "r1", "status": "in_queue"})

    photo = tmp_path / "photo.png"
    photo.write_bytes(make_image(32, 32))
    http = httpx.Client(transport=httpx.MockTransport(handler))
    with Client("http://retouch.test", "rtk_x", http_client=http) as client:
        for key in ("é", "", " lead", "trail ", "tab\there", "x" * 256):
            with pytest.raises(sdk_errors.InvalidInputError) as caught:
                client.submit(
                    prompt="x", image_urls=["https://example.com/a.png"], idempotency_key=key
                )
            assert caught.value.status_code is None and caught.value.error_code == 422001
            assert "Idempotency-Key" in caught.value.message
            assert [item["field"] for item in caught.value.detail] == ["Idempotency-Key"]
            # run() checks it before uploading anything.
            with pytest.raises(sdk_errors.InvalidInputError, match="Idempotency-Key"):
                client.edit("x", [photo], idempotency_key=key or "é")
        assert sent == []
        for key in ("a b", "x" * 255, "!~"):
            client.submit(prompt="x", image_urls=["https://example.com/a.png"], idempotency_key=key)
            assert sent[-1].headers["idempotency-key"] == key


def test_every_httpx_error_is_a_connection_error() -> None:
    """An answer httpx cannot decode (a bad gzip body) is a ConnectionError, not retried; on
    the event stream it makes the wait poll instead."""
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path.rsplit("/", 1)[-1]
        calls.append(path)
        garbled = {"content-encoding": "gzip"}
        if path == "stream":
            garbled["content-type"] = "text/event-stream"
            return httpx.Response(200, headers=garbled, content=b"not gzip")
        if path == "status" and request.url.path.startswith("/v1/requests/bad/"):
            return httpx.Response(200, headers=garbled, content=b"not gzip")
        if path == "status":
            return httpx.Response(200, json=_status("completed"))
        return httpx.Response(200, json=_finished_result())

    http = httpx.Client(transport=httpx.MockTransport(handler))
    with Client("http://retouch.test", "rtk_x", http_client=http) as client:
        with pytest.raises(sdk_errors.ConnectionError, match="DecodingError") as caught:
            client.status("bad")
        assert isinstance(caught.value.__cause__, httpx.DecodingError)
        assert calls == ["status"]
        assert client.wait("r1").ok
        assert calls[1:] == ["stream", "status", "result"]

    async def main() -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with AsyncClient("http://retouch.test", "rtk_x", http_client=http) as client:
            with pytest.raises(sdk_errors.ConnectionError, match="DecodingError"):
                await client.status("bad")

    asyncio.run(main())


# A stalled server: it takes each request and never answers.
STALLED: Routes = {
    ("GET", "/v1/requests/r1/stream"): STALL,
    ("GET", "/v1/requests/r1/status"): STALL,
    ("GET", "/v1/requests/r1/result"): STALL,
}


def _late_client(base: str, **options: Any) -> Client:
    # Calls that would each take 3 s, retried: a wait ignoring its deadline takes 6 s+.
    return Client(base, "rtk_x", timeout=httpx.Timeout(3.0), max_retries=1, **options)


@pytest.mark.parametrize("use_stream", [True, False])
def test_a_wait_keeps_its_timeout_against_a_stalled_server(use_stream: bool) -> None:
    with (
        ScriptedServer(STALLED) as stalled,
        _late_client(stalled.base, use_stream=use_stream) as client,
    ):
        started = time.monotonic()
        with pytest.raises(sdk_errors.WaitTimeout) as caught:
            client.wait("r1", timeout=0.5)
        took = time.monotonic() - started
    assert caught.value.request_id == "r1" and "r1" in caught.value.message
    # The timeout, plus at most one request's floor (0.5 s).
    assert 0.5 <= took < 2.0, took


def test_a_wait_keeps_its_timeout_when_the_result_stalls() -> None:
    routes: Routes = {
        ("GET", "/v1/requests/r1/status"): (200, _status("completed"), {}),
        ("GET", "/v1/requests/r1/result"): STALL,
    }
    with ScriptedServer(routes) as server, _late_client(server.base, use_stream=False) as client:
        started = time.monotonic()
        with pytest.raises(sdk_errors.WaitTimeout) as caught:
            client.wait("r1", timeout=0.5)
        took = time.monotonic() - started
    assert took < 2.0, took
    assert caught.value.status is not None and caught.value.status.status == "completed"
    assert len(server.paths("/result")) == 1


def test_a_wait_makes_no_retry_past_its_deadline() -> None:
    busy = (503, {"error_code": 503001, "error_message": "busy"}, {"Retry-After": "2"})
    routes = {("GET", "/v1/requests/r1/status"): busy}
    with ScriptedServer(routes) as server, _late_client(server.base, use_stream=False) as client:
        started = time.monotonic()
        with pytest.raises(sdk_errors.WaitTimeout):
            client.wait("r1", timeout=0.5)
        took = time.monotonic() - started
    # Retry-After asks for 2 s: the retry would come after the deadline, so is not made.
    assert 0.45 <= took < 1.8, took
    assert len(server.paths("/status")) == 1


def test_an_async_wait_keeps_its_timeout_against_a_stalled_server() -> None:
    async def main(base: str) -> float:
        async with AsyncClient(base, "rtk_x", timeout=3.0, max_retries=1) as client:
            started = time.monotonic()
            with pytest.raises(sdk_errors.WaitTimeout):
                await client.wait("r1", timeout=0.5)
            return time.monotonic() - started

    with ScriptedServer(STALLED) as stalled:
        took = asyncio.run(main(stalled.base))
    assert took < 2.0, took
