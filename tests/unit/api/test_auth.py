"""Keys: missing, malformed or unknown; and one key never sees another's requests."""

from __future__ import annotations

import pytest

from e2e_support import Api, ImageServer

from ..inprocess import InProcessServer

BODY = {"prompt": "x", "image_urls": ["https://example.com/a.png"]}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer rtk_000000000000_" + "a" * 43},
        {"Authorization": "Bearer not-a-key"},
    ],
)
def test_requests_without_a_valid_key_are_401(api: Api, headers: dict[str, str]) -> None:
    for response in (
        api.http.post(
            f"{api.base}/v1/models/google/nano-banana-2/edit", json=BODY, headers=headers
        ),
        api.http.get(f"{api.base}/v1/requests/x/status", headers=headers),
        api.http.get(f"{api.base}/v1/requests/x/result", headers=headers),
        api.http.post(f"{api.base}/v1/requests/x/cancel", headers=headers),
        api.http.get(f"{api.base}/v1/models", headers=headers),
    ):
        assert response.status_code == 401
        assert response.json()["error_code"] == 401001
        assert response.headers["www-authenticate"] == "Bearer"


def test_a_key_sees_only_its_own_requests(
    api: Api, server: InProcessServer, image_server: ImageServer
) -> None:
    other = api.with_key(server.new_key("other"))
    request_id = api.submit_ok(
        {"prompt": "x", "image_urls": [image_server.url("/square.png")], "resolution": "0.5K"}
    )
    for response in (other.status(request_id), other.result(request_id), other.cancel(request_id)):
        assert response.status_code == 404
        assert response.json()["error_code"] == 404001
    missing = api.status("00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and missing.json()["error_code"] == 404001
    # The owner still can, and the other key's attempt changed nothing.
    assert api.wait(request_id)["status"] == "succeeded"
