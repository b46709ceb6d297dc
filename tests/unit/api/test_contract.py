"""The contract's bodies, in-process: table sizes and formats, the auto ratio, warnings,
signed file URLs, HEAD and Range, models and schema (see e2e/test_contract_smoke.py for the
same over real HTTP)."""

from __future__ import annotations

import pytest

from e2e_support import Api, ImageServer
from retouch.contract.sizes import SIZE_TABLE

FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


@pytest.mark.parametrize(
    ("resolution", "output_format", "ratio"),
    [("0.5K", "jpeg", "2:3"), ("1K", "webp", "21:9"), ("2K", "png", "4:5"), ("4K", "jpeg", "1:1")],
)
def test_each_resolution_and_format_has_the_table_size(
    api: Api, image_server: ImageServer, resolution: str, output_format: str, ratio: str
) -> None:
    request_id = api.submit_ok(
        {
            "prompt": "make it blue",
            "image_urls": [image_server.url("/square.png")],
            "resolution": resolution,
            "output_format": output_format,
            "aspect_ratio": ratio,
        }
    )
    result = api.wait(request_id, timeout=240)
    assert result["status"] == "succeeded", result
    _, image = api.download(result["output"]["image"])
    assert image.format == FORMATS[output_format]
    assert image.size == SIZE_TABLE[ratio][resolution]
    generation = result["generation"]
    assert (generation["width"], generation["height"]) == SIZE_TABLE[ratio][resolution]
    assert generation["generated_width"] % 16 == 0 and generation["generated_height"] % 16 == 0
    if resolution == "4K":
        assert generation["resize"] == "lanczos"
        assert any("upscaled to 4096×4096 with lanczos" in w for w in result["warnings"])


@pytest.mark.parametrize(
    ("path", "expected_ratio"),
    [("/wide.jpg", "16:9"), ("/tall.webp", "9:16"), ("/square.png", "1:1")],
)
def test_auto_takes_the_ratio_closest_to_the_first_image(
    api: Api, image_server: ImageServer, path: str, expected_ratio: str
) -> None:
    request_id = api.submit_ok(
        {
            "prompt": "add a hat",
            "image_urls": [image_server.url(path), image_server.url("/square.png")],
            "resolution": "0.5K",
        }
    )
    result = api.wait(request_id)
    assert result["generation"]["aspect_ratio"] == expected_ratio
    _, image = api.download(result["output"]["image"])
    assert image.size == SIZE_TABLE[expected_ratio]["0.5K"]


def test_fields_the_engine_cannot_honour_are_reported(api: Api, image_server: ImageServer) -> None:
    request_id = api.submit_ok(
        {
            "prompt": "today's weather",
            "image_urls": [image_server.url("/square.png")],
            "enable_web_search": True,
            "limit_generations": False,
            "resolution": "0.5K",
        }
    )
    warnings = api.wait(request_id)["warnings"]
    assert any(w.startswith("enable_web_search") for w in warnings)
    assert any(w.startswith("limit_generations=false") for w in warnings)
    # The in-process worker's engine says it is a preview, as the bundled preview models do.
    assert any("preview model" in w for w in warnings)


def test_signed_file_urls_refuse_tampering(api: Api, image_server: ImageServer) -> None:
    result = api.wait(
        api.submit_ok(
            {"prompt": "x", "image_urls": [image_server.url("/square.png")], "resolution": "0.5K"}
        )
    )
    url = result["output"]["image"]
    for bad in (
        url.replace("sig=", "sig=0"),
        url.split("?")[0],
        url.replace("expires=", "expires=1"),
    ):
        response = api.http.get(bad)
        assert response.status_code == 403
        assert response.json()["error_code"] == 403001


def test_models_schema_and_docs(api: Api) -> None:
    models = api.http.get(f"{api.base}/v1/models", headers=api.headers).json()["models"]
    assert [m["id"] for m in models] == ["google/nano-banana-2/edit"]
    assert models[0]["preview"] is True
    schema = api.http.get(models[0]["schema_url"], headers=api.headers).json()
    assert schema["required"] == ["prompt", "image_urls"]
    assert schema["properties"]["image_urls"]["maxItems"] == 20
    assert schema["additionalProperties"] is False
    unknown = api.http.get(f"{api.base}/v1/models/acme/thing/edit/schema", headers=api.headers)
    assert unknown.status_code == 400 and unknown.json()["error_code"] == 400001
    assert api.http.get(f"{api.base}/docs").status_code == 200
    openapi = api.http.get(f"{api.base}/openapi.json").json()
    submit = openapi["paths"]["/v1/models/{owner_name}/{model_name}/{task}"]["post"]
    body_schema = submit["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema["required"] == ["prompt", "image_urls"]


def test_file_downloads_support_head_and_one_range(api: Api, image_server: ImageServer) -> None:
    result = api.wait(
        api.submit_ok(
            {"prompt": "x", "image_urls": [image_server.url("/square.png")], "resolution": "0.5K"}
        )
    )
    url = result["output"]["image"]
    full = api.http.get(url).content
    head = api.http.head(url)
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(full)
    part = api.http.get(url, headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == full[:10]
    for bad in ("bytes=abc", "bytes=5-2", "items=0-1", "bytes=0-1,4-5", f"bytes={len(full)}-"):
        response = api.http.get(url, headers={"Range": bad})
        assert response.status_code == 416, bad
        assert response.json()["error_code"] == 416001
