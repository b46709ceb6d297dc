"""Inputs that cannot be used fail the job with a message naming image_urls[i] and why."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from e2e_support import Api, ImageServer, RetouchProcess, make_image, server_env

# On SQLite only: fetching inputs is the worker's, whatever the job store.
pytestmark = pytest.mark.sqlite_only


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/missing.png", "404"),
        ("/text.png", "not an image"),
        ("/huge.png", "larger than"),
        ("/redirect?to=http://169.254.169.254/latest/meta-data/", "refused"),
    ],
)
def test_a_bad_input_fails_the_job_naming_it(
    api: Api, image_server: ImageServer, path: str, reason: str
) -> None:
    request_id = api.submit_ok(
        {"prompt": "x", "image_urls": [image_server.url("/square.png"), image_server.url(path)]}
    )
    result = api.wait(request_id)
    assert result["status"] == "failed", result
    assert "output" not in result
    assert result["error"]["message"].startswith("image_urls[1]: ")
    assert reason in result["error"]["message"]
    assert result["error"]["code"]
    assert api.status(request_id).json()["status"] == "completed"


def test_a_private_address_off_the_allow_list_is_refused(
    api: Api, image_server: ImageServer
) -> None:
    # The shared server allows 127.0.0.1 only; 127.0.0.2 is loopback too.
    port = image_server.server.server_address[1]
    result = api.wait(
        api.submit_ok({"prompt": "x", "image_urls": [f"http://127.0.0.2:{port}/a.png"]})
    )
    assert result["status"] == "failed"
    assert result["error"]["message"].startswith("image_urls[0]: refused address 127.0.0.2")


def test_without_an_allow_list_loopback_is_refused(
    data_dir: Path, image_server: ImageServer
) -> None:
    server = RetouchProcess(data_dir, server_env(RETOUCH_FETCH_ALLOW="")).serve()
    try:
        api = Api(server.base, server.read_first_key())
        for url in (
            image_server.url("/square.png"),
            image_server.url("/square.png").replace("127.0.0.1", "localhost"),
        ):
            result = api.wait(api.submit_ok({"prompt": "x", "image_urls": [url]}))
            assert result["status"] == "failed", result
            assert result["error"]["message"].startswith("image_urls[0]: refused address 127.0.0.1")
    finally:
        server.stop()


def test_data_uri_inputs_work(api: Api) -> None:
    uri = "data:image/png;base64," + base64.b64encode(make_image(200, 100)).decode()
    result = api.wait(api.submit_ok({"prompt": "x", "image_urls": [uri], "resolution": "0.5K"}))
    assert result["status"] == "succeeded", result
    assert result["generation"]["aspect_ratio"] == "16:9"
