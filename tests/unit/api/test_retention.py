"""Retention and a full disk as a client sees them: an expired request answers 404001 saying
it expired (status, result, stream, cancel) and its files 404; a full disk answers 507001 to
uploads and submits, keeps nothing half-written, and fails a job with `storage_full`."""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import exc, func, select

from e2e_support import Api, make_image
from retouch.auth.keys import KeyLimits
from retouch.contract.errors import NOT_FOUND, STORAGE_FULL
from retouch.jobs.schema import uploads

from ..inprocess import SQUARE_PNG, InProcessServer, in_process_server

IMAGE = "data:image/png;base64," + SQUARE_PNG


def body(**fields: Any) -> dict[str, Any]:
    return {"prompt": "a red square", "image_urls": [IMAGE], **fields}


def until_expired(api: Api, request_id: str, timeout: float = 15.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = api.status(request_id)
        if response.status_code == 404:
            return response
        assert time.monotonic() < deadline, f"{request_id} did not expire: {response.text}"
        time.sleep(0.05)


def assert_expired(response: httpx.Response, request_id: str, *words: str) -> None:
    assert response.status_code == 404, response.text
    answer = response.json()
    assert answer["error_code"] == NOT_FOUND
    assert answer["error_message"].startswith(f"request {request_id} expired")
    for word in words:
        assert word in answer["error_message"]


@pytest.fixture(scope="module")
def brief_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    """Results kept 1 s, swept every 0.1 s."""
    with in_process_server(
        tmp_path_factory.mktemp("retention") / "data",
        retain_results=1.0,
        retention_sweep_seconds=0.1,
    ) as running:
        yield running


def test_an_expired_request_answers_404001_saying_it_expired(
    brief_server: InProcessServer,
) -> None:
    api = brief_server.api()
    request_id = api.submit_ok(body())
    result = api.wait(request_id)
    assert result["status"] == "succeeded"
    file_url = result["output"]["image"]
    assert api.http.get(file_url).status_code == 200
    assert_expired(until_expired(api, request_id), request_id, "1 second", "RETOUCH_RETAIN_RESULTS")
    assert_expired(api.result(request_id), request_id, "1 second")
    stream = api.http.get(
        f"{api.base}/v1/requests/{request_id}/stream", headers=api.headers, timeout=30
    )
    assert_expired(stream, request_id)
    assert_expired(api.cancel(request_id), request_id)
    # Its files are deleted: the URL handed out before answers 404.
    assert api.http.get(file_url).status_code == 404
    assert not (brief_server.settings.outputs_dir / request_id).exists()
    # A request that never was still reads "not found".
    missing = api.status("00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and "not found" in missing.json()["error_message"]


def test_a_keys_own_lifetime_is_named_in_the_answer(tmp_path: Path) -> None:
    with in_process_server(tmp_path / "data", retention_sweep_seconds=0.1) as server:
        brief = server.api(
            server.services.keys.create("brief", limits=KeyLimits(retain_results_seconds=1.5))[1]
        )
        usual = server.api()
        brief_id = brief.submit_ok(body())
        usual_id = usual.submit_ok(body())
        brief.wait(brief_id)
        usual.wait(usual_id)
        assert_expired(until_expired(brief, brief_id), brief_id, "1.5 seconds", "--retain-results")
        assert usual.status(usual_id).status_code == 200  # the default: 7 days


# --- a full disk ----------------------------------------------------------------------


class FullDisk:
    """Makes the storage's file writes fail with ENOSPC after `room` more of them succeed,
    while `full` is set: os.fsync of a file being stored raises, after its bytes were
    written to the temporary file (so what it leaves behind is checked too)."""

    def __init__(self) -> None:
        self.full = threading.Event()
        self.room = 0
        self._fsync = os.fsync

    def fsync(self, descriptor: int) -> None:
        if self.full.is_set() and not os.path.isdir(f"/proc/self/fd/{descriptor}"):
            if self.room <= 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.room -= 1
        self._fsync(descriptor)


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> FullDisk:
    disk = FullDisk()
    monkeypatch.setattr(os, "fsync", disk.fsync)  # what LocalStorage.put calls
    return disk


@pytest.fixture(scope="module")
def disk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    with in_process_server(tmp_path_factory.mktemp("full-disk") / "data") as running:
        yield running


def stored_files(server: InProcessServer) -> list[Path]:
    return sorted(path for path in server.settings.outputs_dir.rglob("*") if path.is_file())


def upload_rows(server: InProcessServer) -> int:
    with server.services.store.engine.connect() as conn:  # type: ignore[attr-defined]
        return int(conn.execute(select(func.count()).select_from(uploads)).scalar_one())


def test_an_upload_to_a_full_disk_answers_507_and_keeps_nothing(
    disk_server: InProcessServer, full_disk: FullDisk
) -> None:
    api = disk_server.api()
    before, rows = stored_files(disk_server), upload_rows(disk_server)
    full_disk.full.set()
    response = api.http.post(
        f"{api.base}/v1/files", files={"file": ("photo", make_image(40, 30))}, headers=api.headers
    )
    assert response.status_code == 507, response.text
    answer = response.json()
    assert answer["error_code"] == STORAGE_FULL
    assert "storage is full" in answer["error_message"]
    assert "retry later" in answer["error_message"]
    assert stored_files(disk_server) == before  # no temporary file left
    assert upload_rows(disk_server) == rows  # and no row for a file that is not there
    # The same client goes on; with room again the same upload works.
    assert api.http.get(f"{api.base}/v1/models", headers=api.headers).status_code == 200
    full_disk.full.clear()
    again = api.http.post(
        f"{api.base}/v1/files", files={"file": ("photo", make_image(40, 30))}, headers=api.headers
    )
    assert again.status_code == 200, again.text
    assert upload_rows(disk_server) == rows + 1


def sqlite_full() -> exc.OperationalError:
    error = sqlite3.OperationalError("database or disk is full")
    error.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
    return exc.OperationalError("INSERT INTO jobs …", {}, error)


def test_a_submit_to_a_full_database_answers_507(
    disk_server: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = disk_server.api()

    def full(**_: object) -> None:
        raise sqlite_full()

    monkeypatch.setattr(disk_server.services.store, "submit", full)
    response = api.submit(body())
    assert response.status_code == 507, response.text
    assert response.json()["error_code"] == STORAGE_FULL
    monkeypatch.undo()
    assert api.submit(body()).status_code == 200


def test_a_job_on_a_full_disk_fails_with_storage_full_and_leaves_no_files(
    disk_server: InProcessServer, full_disk: FullDisk
) -> None:
    api = disk_server.api()
    full_disk.room = 1  # the first of its two outputs is stored, the second is not
    full_disk.full.set()
    request_id = api.submit_ok(body(num_images=2))
    result = api.wait(request_id)
    full_disk.full.clear()
    assert result["status"] == "failed", result
    assert result["error"]["code"] == "storage_full"
    assert "storage is full" in result["error"]["message"]
    folder = disk_server.settings.outputs_dir / request_id
    assert not folder.exists() or list(folder.iterdir()) == []


def test_storage_full_is_told_apart() -> None:
    from retouch.storage.base import StorageFull, is_storage_full

    assert is_storage_full(OSError(errno.ENOSPC, "full"))
    assert is_storage_full(OSError(errno.EDQUOT, "quota"))
    assert is_storage_full(StorageFull("x"))
    assert is_storage_full(sqlite_full())
    assert not is_storage_full(OSError(errno.EACCES, "denied"))
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
    assert not is_storage_full(exc.OperationalError("x", {}, locked))
