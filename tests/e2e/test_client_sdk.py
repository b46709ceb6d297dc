"""The SDK against `retouch serve` where the event stream must really stream: waits that time
out mid-stream and resume, and the async client (see unit/client/test_sdk.py for the rest,
in-process)."""

from __future__ import annotations

import asyncio
import builtins
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from client_support import SMALL, client_env, occupy_worker, sizes_of
from e2e_support import Api, ImageServer, RetouchProcess, free_port, make_image
from retouch.client import (
    DEFAULT_ENDPOINT,
    APIConnectionError,
    AsyncClient,
    AsyncRequestHandle,
    Client,
    Completed,
    Event,
    InProgress,
    LogEntry,
    Queued,
    RequestHandle,
    Result,
    Status,
    Upload,
)
from retouch.client import errors as sdk_errors

# On SQLite only: the SDK speaks HTTP: the server's job store plays no part.
pytestmark = pytest.mark.sqlite_only


@pytest.fixture
def client(server: RetouchProcess, api: Api) -> Iterator[Client]:
    with Client(server.base, api.key) as opened:
        yield opened


def test_async_run_awaits_async_callbacks(
    server: RetouchProcess, api: Api, image_server: ImageServer, tmp_path: Path
) -> None:
    updates: list[str] = []
    submitted: list[str] = []

    async def on_update(status: Status) -> None:
        await asyncio.sleep(0)
        updates.append(status.status)

    async def main() -> list[Path]:
        async with AsyncClient(server.base, api.key) as client:
            result = await client.edit(
                "make it snow",
                [image_server.url("/wide.jpg")],
                output_format="jpeg",
                resolution="0.5K",
                on_submitted=lambda s: submitted.append(s.request_id),
                on_update=on_update,
            )
            assert result.ok and result.request_id == submitted[0]
            assert (await client.status(result.request_id)).status == "completed"
            return await client.download(result, tmp_path)

    files = asyncio.run(main())
    # auto takes the ratio of the 640×360 input: 16:9.
    assert sizes_of(files) == [("JPEG", (688, 384))]
    assert not updates or updates[-1] in ("completed", "in_progress")


def test_timeout_raises_wait_timeout_and_the_job_can_be_resumed(
    client: Client, image_server: ImageServer
) -> None:
    submitted: list[str] = []
    with pytest.raises(sdk_errors.WaitTimeout) as caught:
        client.edit(
            "x",
            [image_server.url("/slow.png?seconds=2")],
            timeout=0.3,
            on_submitted=lambda s: submitted.append(s.request_id),
            **SMALL,
        )
    assert caught.value.request_id == submitted[0]
    assert "client.wait(" in caught.value.message
    resumed = client.wait(caught.value.request_id, timeout=60)
    assert resumed.ok and resumed.request_id == submitted[0]


def test_async_wait_timeout_on_the_stream_then_resume(
    server: RetouchProcess, api: Api, image_server: ImageServer
) -> None:
    async def main() -> None:
        async with AsyncClient(server.base, api.key) as client:
            submission = await client.submit(
                prompt="x", image_urls=[image_server.url("/slow.png?seconds=2")], **SMALL
            )
            with pytest.raises(sdk_errors.WaitTimeout) as caught:
                await client.wait(submission.request_id, timeout=0.3)
            assert caught.value.request_id == submission.request_id
            assert (await client.wait(submission.request_id, timeout=60)).ok

    asyncio.run(main())


# Request handles, events, run() and the module-level shortcuts against the real server ------


def _payload(image_server: ImageServer, prompt: str = "make it snow") -> dict[str, Any]:
    return {"prompt": prompt, "image_urls": [image_server.url("/square.png")], **SMALL}


def _log_lines(logs: list[LogEntry] | None) -> list[tuple[object, str, str]]:
    return [(entry.time, entry.level, entry.message) for entry in logs or []]


def _check_events(events: list[Event], final: Result, logged: Result) -> None:
    """The events of a job submitted behind the occupied worker: Queued at position 0 first,
    InProgress (with steps at some point), one Completed last; their log lines are the job's
    log (`logged`: its result with logs), in order, none repeated."""
    kinds = [type(event).__name__ for event in events]
    assert isinstance(events[0], Queued), kinds
    assert events[0].position == 0, events[0].status
    in_progress = [event for event in events if isinstance(event, InProgress)]
    assert in_progress, kinds
    assert any(event.progress is not None for event in in_progress), kinds
    # Queued events come before the InProgress ones, never after.
    first_running = kinds.index("InProgress")
    assert all(not isinstance(event, Queued) for event in events[first_running:]), kinds
    completed = [event for event in events if isinstance(event, Completed)]
    assert len(completed) == 1 and events[-1] is completed[0], kinds
    assert completed[0].result.ok, completed[0].result
    assert completed[0].result.request_id == final.request_id
    lines = [line for event in events for line in _log_lines(event.logs)]
    assert lines, "the events carried no log line"
    assert lines == _log_lines(logged.logs)
    assert len(set(lines)) == len(lines)
    # The same files: their URLs' signatures differ when the reads fall in different seconds.
    unsigned = [
        [url.split("?")[0] for url in result.images] for result in (final, completed[0].result)
    ]
    assert final.ok and unsigned[0] == unsigned[1]


def test_submit_handle_iterates_events_with_logs(
    client: Client, api: Api, image_server: ImageServer
) -> None:
    occupy_worker(api, image_server)
    handle = client.submit(DEFAULT_ENDPOINT, input=_payload(image_server))
    assert isinstance(handle, RequestHandle)
    assert handle.submission is not None
    assert handle.submission.request_id == handle.request_id
    events = list(handle.iter_events(with_logs=True, timeout=60))
    final = handle.result()
    _check_events(events, final, handle.result(with_logs=True))
    assert final.request_id == handle.request_id
    assert handle.status().status == "completed"


def test_async_submit_handle_iterates_events_with_logs(
    server: RetouchProcess, api: Api, image_server: ImageServer
) -> None:
    async def main() -> None:
        async with AsyncClient(server.base, api.key) as client:
            occupy_worker(api, image_server)
            handle = await client.submit(DEFAULT_ENDPOINT, input=_payload(image_server))
            assert isinstance(handle, AsyncRequestHandle)
            events = [event async for event in handle.iter_events(with_logs=True, timeout=60)]
            final = await handle.result()
            _check_events(events, final, await handle.result(with_logs=True))
            assert (await handle.status()).status == "completed"

    asyncio.run(main())


def test_get_handle_waits_and_cancels_a_queued_job(
    client: Client, api: Api, image_server: ImageServer
) -> None:
    running = occupy_worker(api, image_server)
    queued = client.get(api.submit_ok(_payload(image_server)))
    assert isinstance(queued, RequestHandle) and queued.submission is None
    outcome = queued.cancel()
    assert outcome.cancelled and outcome.status == "cancelled"
    events = list(queued.iter_events(timeout=60))
    assert len(events) == 1 and isinstance(events[0], Completed), events
    assert events[0].result.status == "cancelled" and not events[0].result.ok
    with pytest.raises(sdk_errors.JobCancelled) as caught:
        queued.wait(timeout=60)
    assert caught.value.request_id == queued.request_id
    result = client.get(running).wait(timeout=60)
    assert result.ok and result.request_id == running
    assert api.status(queued.request_id).json()["status"] == "cancelled"


def test_async_get_handle_waits_and_cancels_a_queued_job(
    server: RetouchProcess, api: Api, image_server: ImageServer
) -> None:
    async def main() -> None:
        async with AsyncClient(server.base, api.key) as client:
            running = occupy_worker(api, image_server)
            queued = client.get(api.submit_ok(_payload(image_server)))
            assert isinstance(queued, AsyncRequestHandle)
            outcome = await queued.cancel()
            assert outcome.cancelled
            events = [event async for event in queued.iter_events(timeout=60)]
            assert [type(event) for event in events] == [Completed], events
            assert isinstance(events[0], Completed)
            assert events[0].result.status == "cancelled"
            with pytest.raises(sdk_errors.JobCancelled):
                await queued.wait(timeout=60)
            result = await client.get(running).wait(timeout=60)
            assert result.ok and result.request_id == running

    asyncio.run(main())


# As the API page writes the request: its JSON, loaded as is.
API_PAGE_JSON = """
{
  "prompt": "make it snow",
  "image_urls": [],
  "resolution": "0.5K",
  "aspect_ratio": "1:1",
  "output_format": "png"
}
"""


def _local_images(tmp_path: Path) -> tuple[Path, Image.Image]:
    path = tmp_path / "local.png"
    path.write_bytes(make_image(200, 120))
    return path, Image.new("RGB", (96, 160), (10, 200, 30))


def _check_uploaded_run(result: Result, uploads: list[Upload], api: Api) -> None:
    assert result.ok, result
    assert len(uploads) == 2
    # Both inputs reached the engine at their own sizes (the server fetched the uploads).
    assert result.generation is not None
    assert sorted(map(tuple, result.generation.input_sizes)) == [(96, 160), (200, 120)]
    assert result.images
    for url in result.images:
        _, image = api.download(url)
        assert image.size == (result.generation.width, result.generation.height)
    assert result.logs, "with_logs=True: the result carries the job's log"


def test_run_uploads_a_local_path_and_a_pil_image(client: Client, api: Api, tmp_path: Path) -> None:
    path, picture = _local_images(tmp_path)
    payload = json.loads(API_PAGE_JSON)
    payload["image_urls"] = [str(path), picture]
    uploads: list[Upload] = []
    result = client.run(
        DEFAULT_ENDPOINT, input=payload, with_logs=True, timeout=60, on_upload=uploads.append
    )
    _check_uploaded_run(result, uploads, api)
    # The caller's payload is left as it was.
    assert payload["image_urls"] == [str(path), picture]


def test_async_run_uploads_a_local_path_and_a_pil_image(
    server: RetouchProcess, api: Api, tmp_path: Path
) -> None:
    path, picture = _local_images(tmp_path)
    payload = json.loads(API_PAGE_JSON)
    payload["image_urls"] = [path, picture]
    uploads: list[Upload] = []

    async def main() -> Result:
        async with AsyncClient(server.base, api.key) as client:
            return await client.run(
                DEFAULT_ENDPOINT,
                input=payload,
                with_logs=True,
                timeout=60,
                on_upload=uploads.append,
            )

    _check_uploaded_run(asyncio.run(main()), uploads, api)


def test_run_timeout_cancels_a_queued_job_or_leaves_it_going(
    client: Client, api: Api, image_server: ImageServer
) -> None:
    occupy_worker(api, image_server, seconds=3)
    submitted: list[str] = []
    with pytest.raises(sdk_errors.WaitTimeout) as caught:
        client.run(
            DEFAULT_ENDPOINT,
            input=_payload(image_server),
            timeout=0.5,
            cancel_on_timeout=True,
            on_submitted=lambda s: submitted.append(s.request_id),
        )
    late = caught.value
    assert isinstance(late, TimeoutError)
    assert late.cancelled and late.request_id == submitted[0]
    assert late.status is not None and late.status.status == "in_queue"
    assert "cancelled it" in late.message
    assert api.status(submitted[0]).json()["status"] == "cancelled"
    assert client.result(submitted[0]).status == "cancelled"

    with pytest.raises(TimeoutError) as uncancelled:
        client.run(
            DEFAULT_ENDPOINT,
            input=_payload(image_server),
            timeout=0.5,
            on_submitted=lambda s: submitted.append(s.request_id),
        )
    going = uncancelled.value
    assert isinstance(going, sdk_errors.WaitTimeout)
    assert not going.cancelled and going.cancel_outcome is None
    assert going.request_id == submitted[1]
    assert f"client.wait({submitted[1]!r})" in going.message
    assert api.status(submitted[1]).json()["status"] in ("in_queue", "in_progress")
    result = client.wait(submitted[1], timeout=60)
    assert result.ok and result.request_id == submitted[1]


def test_async_run_timeout_cancels_a_queued_job(
    server: RetouchProcess, api: Api, image_server: ImageServer
) -> None:
    async def main() -> str:
        async with AsyncClient(server.base, api.key) as client:
            occupy_worker(api, image_server)
            with pytest.raises(TimeoutError) as caught:
                await client.run(
                    DEFAULT_ENDPOINT,
                    input=_payload(image_server),
                    timeout=0.5,
                    cancel_on_timeout=True,
                )
            assert isinstance(caught.value, sdk_errors.WaitTimeout)
            assert caught.value.cancelled and caught.value.request_id is not None
            return caught.value.request_id

    request_id = asyncio.run(main())
    assert api.status(request_id).json()["status"] == "cancelled"


SHORTCUTS_SCRIPT = """
import json, sys
import retouch.client

endpoint, image_url = sys.argv[1], sys.argv[2]
payload = {"prompt": "make it snow", "image_urls": [image_url], "resolution": "0.5K",
           "aspect_ratio": "1:1"}
handle = retouch.client.submit(endpoint, input=payload)
print(json.dumps({"submitted": handle.request_id, "handle": type(handle).__name__,
                  "base_url": retouch.client.default_client().base_url}))
print(json.dumps({"waited": handle.wait(timeout=60).status}))
result = retouch.client.run(endpoint, input=payload, timeout=60)
print(json.dumps({"ran": result.request_id, "ok": result.ok, "images": len(result.images)}))
print(json.dumps({"status": retouch.client.get(result.request_id).status().status}))
"""


def test_module_shortcuts_use_the_environment(
    server: RetouchProcess, api: Api, image_server: ImageServer, tmp_path: Path
) -> None:
    env = client_env(tmp_path, RETOUCH_URL=server.base, RETOUCH_API_KEY=api.key)
    done = subprocess.run(
        [sys.executable, "-c", SHORTCUTS_SCRIPT, DEFAULT_ENDPOINT, image_server.url("/square.png")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    submitted, waited, ran, status = lines
    assert submitted["handle"] == "RequestHandle"
    assert submitted["base_url"] == server.base
    assert waited == {"waited": "succeeded"}
    assert ran["ok"] is True and ran["images"] == 1
    assert status == {"status": "completed"}
    # Both requests exist on the server, under the key from the environment.
    for request_id in (submitted["submitted"], ran["ran"]):
        assert api.result(request_id).json()["status"] == "succeeded"


def test_module_shortcuts_without_a_key_raise_missing_api_key(tmp_path: Path) -> None:
    env = client_env(tmp_path, RETOUCH_URL=f"http://127.0.0.1:{free_port()}")
    script = (
        "import retouch.client\n"
        "try:\n"
        "    retouch.client.status('x')\n"
        "except retouch.client.MissingApiKeyError as error:\n"
        "    print('missing:', type(error).__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "missing: MissingApiKeyError"


def test_unreachable_server_raises_api_connection_error() -> None:
    base = f"http://127.0.0.1:{free_port()}"
    with Client(base, "rtk_unreachable", max_retries=0, timeout=5) as client:
        with pytest.raises(builtins.ConnectionError) as caught:
            client.status("some-id")
        assert isinstance(caught.value, APIConnectionError)
        assert caught.value.status_code is None
        with pytest.raises(APIConnectionError) as submitting:
            client.submit(DEFAULT_ENDPOINT, input={"prompt": "x", "image_urls": []})
        assert isinstance(submitting.value, builtins.ConnectionError)
        assert "the server may have received it" in submitting.value.message
        handle = client.get("some-id")
        with pytest.raises(APIConnectionError):
            list(handle.iter_events(timeout=5))


def test_async_unreachable_server_raises_api_connection_error() -> None:
    base = f"http://127.0.0.1:{free_port()}"

    async def main() -> None:
        async with AsyncClient(base, "rtk_unreachable", max_retries=1, timeout=5) as client:
            with pytest.raises(builtins.ConnectionError) as caught:
                await client.wait("some-id", timeout=10)
            assert isinstance(caught.value, APIConnectionError)
            assert caught.value.request_id == "some-id"

    asyncio.run(main())
