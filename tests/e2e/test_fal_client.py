"""fal's own Python client (`fal-client` from PyPI, unmodified) against a live `retouch serve`
over HTTPS, pointed at it only by FAL_QUEUE_RUN_HOST (the client speaks https only, so the
server has a certificate from a throwaway CA that the client trusts through SSL_CERT_FILE).
submit + status + result, subscribe with logs (and sync_mode), run (FAL_RUN_HOST), cancel,
and a 422; the calls themselves are in fal_client_calls.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from client_support import occupy_worker
from e2e_support import (
    Api,
    ImageServer,
    RetouchProcess,
    TlsFiles,
    run_node_test,
    seed_data_dir,
    server_env,
)

pytestmark = pytest.mark.sqlite_only
APP = "fal-ai/nano-banana-2/edit"
CALLS = Path(__file__).with_name("fal_client_calls.py")


@pytest.fixture(scope="module")
def fal_server(
    tmp_path_factory: pytest.TempPathFactory, models_cache: Path
) -> Iterator[RetouchProcess]:
    folder = tmp_path_factory.mktemp("fal")
    seed_data_dir(folder / "data", models_cache)
    server = RetouchProcess(folder / "data", server_env(), tls=TlsFiles.issue(folder / "tls"))
    try:
        server.serve()
        server.read_first_key()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def answers(fal_server: RetouchProcess, image_server: ImageServer) -> dict[str, Any]:
    """What every call of fal_client_calls.py answered (the worker busy when it starts, so
    its first request waits in the queue to be cancelled)."""
    assert fal_server.tls is not None and fal_server.key is not None
    host = f"127.0.0.1:{fal_server.port}"
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("FAL_")},
        "FAL_KEY": fal_server.key,
        "FAL_QUEUE_RUN_HOST": f"{host}/fal",
        "FAL_RUN_HOST": f"{host}/fal-run",
        "SSL_CERT_FILE": str(fal_server.tls.ca),
    }
    http = httpx.Client(verify=fal_server.tls.trusting(), timeout=30)
    occupy_worker(Api(fal_server.base, fal_server.key, http), image_server, seconds=5)
    done = subprocess.run(
        [sys.executable, str(CALLS), APP, image_server.url("/square.png")],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    answered: dict[str, Any] = json.loads(done.stdout)
    return answered


def test_submit_status_and_result(answers: dict[str, Any]) -> None:
    submitted = answers["submitted"]
    polled = submitted["polled"]
    assert polled[-1]["type"] == "Completed" and polled[-1]["error"] is None
    assert polled[-1]["metrics"]["inference_time"] > 0
    assert any("generating 1 image(s)" in line for line in polled[-1]["logs"]), polled[-1]
    assert {status["type"] for status in polled} <= {"Queued", "InProgress", "Completed"}
    result = submitted["result"]
    (image,) = result["images"]
    assert image["url"].startswith("https://127.0.0.1:") and image["content_type"] == "image/png"
    assert (image["width"], image["height"]) == (512, 512) and image["file_size"] > 0
    assert result["seed"] == 7 and result["description"] == ""


def test_subscribe_with_logs_and_sync_mode(answers: dict[str, Any]) -> None:
    subscribed = answers["subscribed"]
    assert len(subscribed["enqueued"]) == 1
    updates = subscribed["updates"]
    assert updates[-1]["type"] == "Completed" and updates[-1]["logs"], updates
    images = subscribed["result"]["images"]
    assert len(images) == 2
    assert all(image["url"].startswith("data:image/png;base64,") for image in images)


def test_run_answers_the_output(answers: dict[str, Any]) -> None:
    (image,) = answers["run"]["images"]
    assert image["url"].startswith("https://127.0.0.1:") and image["file_size"] > 0


def test_cancel_in_the_queue(answers: dict[str, Any]) -> None:
    cancelled = answers["cancelled"]
    assert cancelled["type"] == "Completed" and cancelled["error_type"] == "request_cancelled"


def test_invalid_input_is_a_422_in_fals_form(answers: dict[str, Any]) -> None:
    invalid = answers["invalid"]
    assert invalid["status"] == 422
    locations = [problem["loc"] for problem in invalid["body"]["detail"]]
    assert ["body", "prompt"] in locations and ["body", "aspect_ratio"] in locations


def test_the_npm_client(fal_server: RetouchProcess, image_server: ImageServer) -> None:
    """@fal-ai/client: subscribe with logs, and a 422 (tests/node/fal.test.js)."""
    assert fal_server.tls is not None and fal_server.key is not None
    done = run_node_test(
        "fal.test.js",
        {
            "RETOUCH_BASE": fal_server.base,
            "RETOUCH_KEY": fal_server.key,
            "IMAGE_URL": image_server.url("/square.png"),
            "NODE_EXTRA_CA_CERTS": str(fal_server.tls.ca),
        },
    )
    assert done.returncode == 0, done.stdout + done.stderr
