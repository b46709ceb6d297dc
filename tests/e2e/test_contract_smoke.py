"""The contract end to end over real HTTP with the real preview engine: submit, poll, result,
download, cancel; the engine's seeds and determinism as a client sees them."""

from __future__ import annotations

import hashlib

from e2e_support import Api, ImageServer

PROMPT = (
    "Keep the subject identity unchanged, convert the background into a rainy neon cyberpunk "
    "street at night, cinematic lighting, high detail."
)


def test_contract_page_request_gives_a_1024_png(api: Api, image_server: ImageServer) -> None:
    submitted = api.submit({"prompt": PROMPT, "image_urls": [image_server.url("/square.png")]})
    assert submitted.status_code == 200
    body = submitted.json()
    assert set(body) >= {"request_id", "status_url", "result_url", "cancel_url"}
    request_id = body["request_id"]
    for name in ("status_url", "result_url", "cancel_url"):
        assert body[name].startswith(f"{api.base}/v1/requests/{request_id}/")

    result = api.wait(request_id)
    assert result["status"] == "succeeded", result
    status = api.status(request_id).json()
    assert status == {
        "request_id": request_id,
        "status": "completed",
        "status_url": body["status_url"],
        "result_url": body["result_url"],
    }
    assert result["output"]["images"] == [result["output"]["image"]]
    assert result["created_at"].endswith("Z") and result["finished_at"].endswith("Z")
    assert result["model"]["preview"] is True and result["model"]["engine"] == "flux2-klein"
    assert any("preview model" in warning for warning in result["warnings"])
    response, image = api.download(result["output"]["image"])
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert image.format == "PNG" and image.size == (1024, 1024)
    # Cancel over real HTTP: too late for a finished job.
    finished = api.cancel(request_id)
    assert finished.status_code == 202 and finished.json()["outcome"] == "not_cancellable"


def test_four_images_from_several_inputs_with_per_image_seeds(
    api: Api, image_server: ImageServer
) -> None:
    request_id = api.submit_ok(
        {
            "prompt": "combine them",
            "image_urls": [
                image_server.url("/square.png"),
                image_server.url("/wide.jpg"),
                image_server.url("/tall.webp"),
            ],
            "num_images": 4,
            "seed": 41,
            "aspect_ratio": "3:2",
            "resolution": "0.5K",
        }
    )
    result = api.wait(request_id)
    assert result["status"] == "succeeded", result
    assert "image" not in result["output"]
    urls = result["output"]["images"]
    assert len(urls) == 4
    assert result["generation"]["seeds"] == [41, 42, 43, 44]
    assert len(result["generation"]["input_sizes"]) == 3
    digests = {hashlib.sha256(api.download(url)[0].content).hexdigest() for url in urls}
    assert len(digests) == 4


def test_same_request_twice_gives_identical_files(api: Api, image_server: ImageServer) -> None:
    body = {
        "prompt": "paint it like a watercolour",
        "image_urls": [image_server.url("/square-blue.png")],
        "seed": 1234,
        "resolution": "0.5K",
        "output_format": "webp",
    }
    first, second = (api.wait(api.submit_ok(body)) for _ in range(2))
    files = [api.download(result["output"]["image"])[0].content for result in (first, second)]
    assert files[0] == files[1]
    other = api.wait(api.submit_ok({**body, "seed": 1235}))
    assert api.download(other["output"]["image"])[0].content != files[0]
