"""A worker's log lines about a job carry the job's request id."""

from __future__ import annotations

from typing import Any

import pytest

import retouch.worker.runner as runner_module
from e2e_support import Api, ImageServer
from retouch.log_context import REQUEST_ID
from retouch.worker.edit_job import prepare_edit


def test_the_job_runs_with_its_request_id_bound(
    api: Api, image_server: ImageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound: list[str | None] = []
    original = prepare_edit

    def recording(**arguments: Any) -> Any:
        bound.append(REQUEST_ID.get())
        return original(**arguments)

    monkeypatch.setattr(runner_module, "prepare_edit", recording)
    request_id = api.submit_ok(
        {"prompt": "make it blue", "image_urls": [image_server.url("/square.png")]}
    )
    assert api.wait(request_id)["status"] == "succeeded"
    assert bound == [request_id]
