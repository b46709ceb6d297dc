"""Inputs that cannot be used fail the job with a message naming image_urls[i] and why."""

from __future__ import annotations

import base64

import pytest

from e2e_support import Api, ImageServer, make_image


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
    port = image_server.server.server_address[1]
    for url in (f"http://127.0.0.2:{port}/square.png", f"http://localhost:{port}/square.png"):
        result = api.wait(api.submit_ok({"prompt": "x", "image_urls": [url]}))
        assert result["status"] == "failed"
        assert result["error"]["message"].startswith("image_urls[0]: ")
        assert "refused" in result["error"]["message"]


def test_data_uri_inputs_work(api: Api) -> None:
    uri = "data:image/png;base64," + base64.b64encode(make_image(200, 100)).decode()
    result = api.wait(api.submit_ok({"prompt": "x", "image_urls": [uri], "resolution": "0.5K"}))
    assert result["status"] == "succeeded", result
    assert result["generation"]["aspect_ratio"] == "16:9"
