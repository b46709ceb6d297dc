"""RETOUCH_MAX_REQUEST_PIXELS: one request's inputs together, each under the per-image cap."""

from __future__ import annotations

from pathlib import Path

from webhook_receiver import data_uri

from ..inprocess import in_process_server


def test_inputs_over_the_request_budget_fail_the_job(tmp_path: Path) -> None:
    image = data_uri()  # 64×64
    with in_process_server(tmp_path / "data", max_request_pixels=2 * 64 * 64) as server:
        api = server.api()
        within = api.submit_ok({"prompt": "x", "image_urls": [image, image]})
        beyond = api.submit_ok({"prompt": "x", "image_urls": [image, image, image]})
        assert api.wait(within)["status"] == "succeeded"
        result = api.wait(beyond)
    assert result["status"] == "failed" and result["error"]["code"] == "invalid_input_image"
    assert result["error"]["message"].startswith("image_urls[2]: image is 64×64")
    assert "over their 0.00819 MP limit in all" in result["error"]["message"]
