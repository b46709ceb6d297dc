"""Every way a submit can be wrong answers 422001 (or 400001/413001) naming each bad field."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from e2e_support import Api

GOOD: dict[str, Any] = {"prompt": "make it red", "image_urls": ["https://example.com/a.png"]}


def fields_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error_code"] == 422001
    return [item["field"] for item in body["detail"]]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   \n"}, "prompt"),
        ({"prompt": "x" * 8001}, "prompt"),
        ({"prompt": 5}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"image_urls": []}, "image_urls"),
        ({"image_urls": ["https://example.com/a.png"] * 21}, "image_urls"),
        ({"image_urls": "https://example.com/a.png"}, "image_urls"),
        ({"image_urls": ["ftp://example.com/a.png"]}, "image_urls[0]"),
        ({"image_urls": ["https://example.com/a.png", "file:///etc/passwd"]}, "image_urls[1]"),
        ({"image_urls": ["/local/path.png"]}, "image_urls[0]"),
        ({"image_urls": ["http://"]}, "image_urls[0]"),
        ({"image_urls": ["http://example.com:99999/a.png"]}, "image_urls[0]"),
        ({"image_urls": ["data:text/html,<b>hi</b>"]}, "image_urls[0]"),
        ({"image_urls": ["data:image/png;base64"]}, "image_urls[0]"),
        ({"image_urls": [7]}, "image_urls[0]"),
        ({"num_images": 0}, "num_images"),
        ({"num_images": 5}, "num_images"),
        ({"num_images": "2"}, "num_images"),
        ({"num_images": 1.5}, "num_images"),
        ({"num_images": True}, "num_images"),
        ({"seed": "7"}, "seed"),
        ({"seed": 2**63}, "seed"),
        ({"aspect_ratio": "7:3"}, "aspect_ratio"),
        ({"aspect_ratio": "1:1 "}, "aspect_ratio"),
        ({"resolution": "8K"}, "resolution"),
        ({"resolution": "1k"}, "resolution"),
        ({"output_format": "gif"}, "output_format"),
        ({"output_format": "jpg"}, "output_format"),
        ({"safety_tolerance": 0}, "safety_tolerance"),
        ({"safety_tolerance": 7}, "safety_tolerance"),
        ({"safety_tolerance": "4"}, "safety_tolerance"),
        ({"limit_generations": "yes"}, "limit_generations"),
        ({"enable_web_search": 1}, "enable_web_search"),
        ({"promt": "typo"}, "promt"),
    ],
)
def test_each_bad_field_is_named(api: Api, change: dict[str, Any], field: str) -> None:
    assert fields_of(api.submit({**GOOD, **change})) == [field]


def test_missing_required_fields_are_both_named(api: Api) -> None:
    assert sorted(fields_of(api.submit({}))) == ["image_urls", "prompt"]


def test_every_bad_field_is_listed_in_one_response(api: Api) -> None:
    response = api.submit(
        {
            "prompt": "",
            "image_urls": ["https://ok.example/a.png", "gopher://x"],
            "num_images": 9,
            "resolution": "3K",
            "colour": "red",
        }
    )
    assert sorted(fields_of(response)) == sorted(
        ["prompt", "image_urls[1]", "num_images", "resolution", "colour"]
    )
    for item in response.json()["detail"]:
        assert item["message"]
        assert isinstance(item["path"], list)


def test_extreme_but_valid_values_are_accepted(api: Api) -> None:
    body = {
        **GOOD,
        "seed": -(2**63),
        "num_images": 4,
        "safety_tolerance": 1,
        "image_urls": ["https://example.com/a.png"] * 20,
        "prompt": "生成" * 4000,
    }
    request_id = api.submit_ok(body)
    assert api.cancel(request_id).status_code == 202


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'"text"', "application/json"),
        (b"", "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"[" * 100_000, "application/json"),
        (b'{"prompt": ' + b"[" * 100_000 + b"}", "application/json"),
        (b"prompt=x", "application/x-www-form-urlencoded"),
    ],
)
def test_a_body_that_is_not_a_json_object(api: Api, raw: bytes, content_type: str) -> None:
    response = api.http.post(
        f"{api.base}/v1/models/google/nano-banana-2/edit",
        content=raw,
        headers={**api.headers, "Content-Type": content_type},
    )
    assert fields_of(response) == ["body"]


@pytest.mark.parametrize(
    "endpoint",
    ["acme/unknown/edit", "acme/unknown", "acme/unknown/variant/edit", "a/b/c/d/e"],
)
def test_unknown_model_id(api: Api, endpoint: str) -> None:
    """Of any depth (RunComfy's ids have four parts): see test_endpoint_ids.py."""
    response = api.submit(GOOD, endpoint=endpoint)
    assert response.status_code == 400
    assert response.json()["error_code"] == 400001
    assert repr(endpoint) in response.json()["error_message"]
    assert "google/nano-banana-2/edit" in response.json()["error_message"]


def test_body_over_the_cap_is_413(api: Api) -> None:
    # The test server caps bodies at 1 MiB.
    big = {**GOOD, "image_urls": ["data:image/png;base64," + "A" * (1024 * 1024)]}
    response = api.submit(big)
    assert response.status_code == 413
    assert response.json()["error_code"] == 413001


def test_a_body_without_a_key_is_refused_before_it_is_read(api: Api) -> None:
    response = api.http.post(
        f"{api.base}/v1/models/google/nano-banana-2/edit", content=b"x" * (900 * 1024)
    )
    assert response.status_code == 401


def test_chunked_body_over_the_cap_is_413(api: Api) -> None:
    def chunks() -> Any:
        for _ in range(40):
            yield b"x" * 65536

    response = api.http.post(
        f"{api.base}/v1/models/google/nano-banana-2/edit", content=chunks(), headers=api.headers
    )
    assert response.status_code == 413


def test_unknown_routes_and_methods_use_the_envelope(api: Api) -> None:
    missing = api.http.get(f"{api.base}/v2/nothing", headers=api.headers)
    assert missing.status_code == 404 and missing.json()["error_code"] == 404002
    wrong = api.http.delete(f"{api.base}/v1/requests/abc/status", headers=api.headers)
    assert wrong.status_code == 405 and wrong.json()["error_code"] == 405001
