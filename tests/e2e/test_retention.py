"""Retention and a full disk on a real `retouch serve` over HTTP: with lifetimes of 2 s a
finished request answers 404001 saying it expired and its files and uploads answer 404; with
the outputs folder on a full tmpfs, an upload answers 507001 on a connection that stays
usable, a job fails with `storage_full`, and no file is left half-written."""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e_support import Api, make_image, running_server

IMAGE = "data:image/png;base64," + base64.b64encode(make_image(64, 64)).decode()


def edit(**fields: Any) -> dict[str, Any]:
    return {"prompt": "a red square", "image_urls": [IMAGE], "resolution": "0.5K", **fields}


def upload(api: Api, data: bytes) -> httpx.Response:
    return api.http.post(
        f"{api.base}/v1/files", files={"file": ("photo", data)}, headers=api.headers, timeout=30
    )


def eventually_404(http: httpx.Client, url: str, headers: dict[str, str]) -> httpx.Response:
    deadline = time.monotonic() + 30
    while True:
        response = http.get(url, headers=headers, timeout=30)
        if response.status_code == 404:
            return response
        assert time.monotonic() < deadline, f"{url} still answers {response.status_code}"
        time.sleep(0.1)


def test_results_and_uploads_expire(tmp_path: Path, models_cache: Path) -> None:
    with running_server(
        tmp_path / "data",
        models_cache,
        RETOUCH_RETAIN_RESULTS="2s",
        RETOUCH_RETAIN_UPLOADS="2s",
        RETOUCH_RETENTION_SWEEP_SECONDS="0.2",
    ) as server:
        api = server.api()
        uploaded = upload(api, make_image(40, 30))
        assert uploaded.status_code == 200, uploaded.text
        upload_url = uploaded.json()["url"]
        request_id = api.submit_ok(edit())
        result = api.wait(request_id)
        assert result["status"] == "succeeded", result
        output_url = result["output"]["image"]
        assert api.http.get(output_url).status_code == 200

        status = eventually_404(
            api.http, f"{api.base}/v1/requests/{request_id}/status", api.headers
        )
        answer = status.json()
        assert answer["error_code"] == 404001
        assert answer["error_message"].startswith(f"request {request_id} expired")
        assert "2 seconds" in answer["error_message"]
        assert "RETOUCH_RETAIN_RESULTS" in answer["error_message"]
        expired_result = api.result(request_id)
        assert expired_result.status_code == 404
        assert "expired" in expired_result.json()["error_message"]
        assert api.http.get(output_url).status_code == 404
        eventually_404(api.http, upload_url, {})
        assert not (server.data_dir / "outputs" / request_id).exists()
        assert "retention: deleted" in server.log_text()


def _mounted_tmpfs(where: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "1m") -> Iterator[Path]:
    if not _mounted_tmpfs(where, size):
        pytest.skip("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> Path:
    """A file that takes all the room left in `folder`'s file system."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as handle:
        for size in (64 * 1024, 1024, 1):
            try:
                while True:
                    handle.write(b"\0" * size)
            except OSError as error:
                assert error.errno == errno.ENOSPC
    return filler


def client_port(response: httpx.Response) -> int:
    address = response.extensions["network_stream"].get_extra_info("client_addr")
    return int(address[1])


def test_a_full_disk_answers_507_and_fails_jobs_with_storage_full(
    tmp_path: Path, models_cache: Path
) -> None:
    data_dir = tmp_path / "data"
    with (
        small_tmpfs(data_dir / "outputs") as outputs,
        running_server(data_dir, models_cache) as server,
    ):
        filler = fill(outputs)
        # One connection for every call below (httpx keeps it alive).
        assert server.key is not None
        api = Api(server.base, server.key, httpx.Client(timeout=30))
        first = upload(api, make_image(200, 200))
        assert first.status_code == 507, first.text
        answer = first.json()
        assert answer["error_code"] == 507001
        assert "storage is full" in answer["error_message"]
        after = api.http.get(f"{api.base}/v1/models", headers=api.headers)
        assert after.status_code == 200
        assert client_port(after) == client_port(first), "the connection was not kept"

        request_id = api.submit_ok(edit())
        result = api.wait(request_id)
        assert result["status"] == "failed", result
        assert result["error"]["code"] == "storage_full"
        assert "storage is full" in result["error"]["message"]
        # Nothing half-written: no temporary file, no output of the failed job.
        assert sorted(path.name for path in outputs.rglob("*") if path.is_file()) == ["filler"]

        filler.unlink()  # room again: the same connection uploads
        again = upload(api, make_image(200, 200))
        assert again.status_code == 200, again.text
        assert client_port(again) == client_port(first)
