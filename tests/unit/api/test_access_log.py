"""The access log (RETOUCH_ACCESS_LOG=true): one line per request on `retouch.access`, with
the method, the path without query values, the status, the duration, the client and the
request id; none when it is off (the default)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from retouch.api.access_log import shown_path

from ..inprocess import SQUARE_PNG, InProcessServer, in_process_server
from ..log_capture import json_lines

BODY = {"prompt": "x", "image_urls": ["data:image/png;base64," + SQUARE_PNG]}


def access_lines() -> AbstractContextManager[list[dict[str, Any]]]:
    return json_lines("retouch.access")


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    data_dir = tmp_path_factory.mktemp("access-log") / "data"
    with in_process_server(data_dir, worker=False, access_log=True) as server:
        yield server


def test_each_request_is_one_line_with_its_request_id(logged: InProcessServer) -> None:
    api = logged.api()
    with access_lines() as lines:
        request_id = api.submit_ok(BODY)
        api.http.get(f"{api.base}/v1/requests/{request_id}/status?logs=true", headers=api.headers)
        api.http.get(f"{api.base}/v1/requests/{request_id}/status")  # no key
    submit, poll, refused = lines
    assert submit["logger"] == "retouch.access" and submit["level"] == "INFO"
    assert submit["method"] == "POST"
    assert submit["path"] == "/v1/models/google/nano-banana-2/edit"
    assert submit["status"] == 200
    assert submit["request_id"] == request_id
    assert submit["client"] == "testclient"  # TestClient's address
    assert isinstance(submit["duration_ms"], float) and submit["duration_ms"] >= 0
    assert submit["message"] == (
        f"POST /v1/models/google/nano-banana-2/edit 200 {submit['duration_ms']:.2f} ms testclient"
    )
    status_path = f"/v1/requests/{request_id}/status"
    assert (poll["path"], poll["status"], poll["request_id"]) == (
        f"{status_path}?logs",
        200,
        request_id,
    )
    # Refused before the job is looked up: no request id bound.
    assert (refused["status"], refused["request_id"]) == (401, "-")


def test_query_values_stay_out_of_the_log(logged: InProcessServer) -> None:
    api = logged.api()
    with access_lines() as lines:
        api.http.get(f"{api.base}/v1/files/x/y.png?expires=1&signature=secret")
    [line] = lines
    assert line["path"] == "/v1/files/x/y.png?expires&signature"
    assert "secret" not in json.dumps(line)


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        (b"", "/p"),
        (b"a=1&b=2", "/p?a&b"),
        (b"webhook=https%3A%2F%2Fx%2Fy%3Ftoken%3Ds", "/p?webhook"),
        (b"flag&&x%20y=1", "/p?flag&x y"),
    ],
)
def test_shown_path_keeps_only_the_query_keys(query: bytes, shown: str) -> None:
    assert shown_path({"path": "/p", "query_string": query}) == shown


def test_nothing_is_logged_by_default(tmp_path: Path) -> None:
    with in_process_server(tmp_path / "data", worker=False) as server, access_lines() as lines:
        assert server.settings.access_log is False
        server.api().submit_ok(BODY)
    assert lines == []
