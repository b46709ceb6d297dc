"""The SDK against `retouch serve` where the event stream must really stream: waits that time
out mid-stream and resume, and the async client (see unit/client/test_sdk.py for the rest,
in-process)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from client_support import SMALL, sizes_of
from e2e_support import Api, ImageServer, RetouchProcess
from retouch.client import AsyncClient, Client, Status
from retouch.client import errors as sdk_errors


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
            result = await client.run(
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
        client.run(
            "x",
            [image_server.url("/slow.png?seconds=2")],
            timeout=0.3,
            on_submitted=lambda s: submitted.append(s.request_id),
            **SMALL,
        )
    assert caught.value.request_id == submitted[0]
    assert "retouch wait" in caught.value.message
    resumed = client.wait(caught.value.request_id, timeout=60)
    assert resumed.ok and resumed.request_id == submitted[0]


def test_async_wait_timeout_on_the_stream_then_resume(
    server: RetouchProcess, api: Api, image_server: ImageServer
) -> None:
    async def main() -> None:
        async with AsyncClient(server.base, api.key) as client:
            submission = await client.submit(
                "x", [image_server.url("/slow.png?seconds=2")], **SMALL
            )
            with pytest.raises(sdk_errors.WaitTimeout) as caught:
                await client.wait(submission.request_id, timeout=0.3)
            assert caught.value.request_id == submission.request_id
            assert (await client.wait(submission.request_id, timeout=60)).ok

    asyncio.run(main())
