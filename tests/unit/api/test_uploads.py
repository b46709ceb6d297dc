"""Uploads: POST /v1/files checks an image like a fetched input and answers a signed URL that
works in image_urls, read by the worker from storage rather than over HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from e2e_support import Api, make_image
from retouch.api import uploads
from retouch.storage.own_files import parse_file_url

from ..inprocess import InProcessServer, in_process_server

UPLOAD_NAME = re.compile(r"^[0-9a-f-]{36}/upload\.(png|jpg|webp)$")
# The isolated server's limits: small enough to cross with small test images.
MAX_PIXELS = 300_000
MAX_BYTES = 300_000


def upload(
    api: Api, data: bytes, *, field: str = "file", headers: dict[str, str] | None = None
) -> httpx.Response:
    return api.http.post(
        f"{api.base}/v1/files",
        files={field: ("photo", data)},
        headers=api.headers if headers is None else headers,
        timeout=30,
    )


def upload_ok(api: Api, data: bytes) -> dict[str, Any]:
    response = upload(api, data)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def stored_name(url: str) -> str:
    signed = parse_file_url(url)
    assert signed is not None, url
    return signed.name


def assert_invalid_file(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_code"] == status * 1000 + 1
    assert "file" in body["error_message"]
    for word in words:
        assert word in body["error_message"]


@pytest.fixture(scope="module")
def isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    """A server that may fetch no private address (127.0.0.1 included), so a job that
    succeeds on an upload's 127.0.0.1 URL read it from storage; with small input limits."""
    with in_process_server(
        tmp_path_factory.mktemp("uploads") / "data",
        fetch_allow=(),
        max_input_pixels=MAX_PIXELS,
        fetch_max_bytes=MAX_BYTES,
    ) as running:
        yield running


def signed_url(server: InProcessServer, name: str, ttl_seconds: int) -> str:
    """A URL for `name` signed with the server's own key (a negative ttl: already expired)."""
    expires, signature = server.services.signer.sign(name, ttl_seconds)
    return f"{server.base}/v1/files/{name}?{urlencode({'expires': expires, 'sig': signature})}"


def failed_message(api: Api, url: str) -> str:
    result = api.wait(api.submit_ok({"prompt": "x", "image_urls": [url], "resolution": "0.5K"}))
    assert result["status"] == "failed", result
    assert result["error"]["code"] == "invalid_input_image"
    return str(result["error"]["message"])


# --- the route ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")],
)
def test_an_upload_answers_a_signed_url_serving_the_file(
    api: Api, fmt: str, content_type: str
) -> None:
    data = make_image(300, 200, fmt)
    body = upload_ok(api, data)
    assert set(body) == {"url", "expires_at", "content_type", "width", "height", "bytes"}
    assert body["url"].startswith(f"{api.base}/v1/files/")
    assert UPLOAD_NAME.match(stored_name(body["url"]))
    assert (body["content_type"], body["width"], body["height"]) == (content_type, 300, 200)
    assert body["bytes"] == len(data)
    # expires_at is the URL's own expiry, as ISO 8601 UTC.
    expires = int(parse_qs(urlsplit(body["url"]).query)["expires"][0])
    assert body["expires_at"].endswith("Z")
    assert datetime.fromisoformat(body["expires_at"]).timestamp() == expires

    downloaded, image = api.download(body["url"])  # no key: the signature is the permission
    assert downloaded.headers["content-type"] == content_type
    assert downloaded.headers["x-content-type-options"] == "nosniff"
    assert downloaded.content == data  # stored as sent
    assert image.format == fmt


def test_a_format_we_do_not_serve_is_stored_as_png(monkeypatch: pytest.MonkeyPatch) -> None:
    # HEIF decodes where pillow_heif is installed but is not served; WEBP stands in for it.
    monkeypatch.delitem(uploads._SERVED, "WEBP")
    checked = uploads.check_image(make_image(30, 20, "WEBP"), max_pixels=MAX_PIXELS)
    assert checked.format == "png" and checked.data.startswith(b"\x89PNG")
    assert (checked.width, checked.height) == (30, 20)


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        (b"this is not an image at all", "file", ["not an image"]),
        (make_image(400, 300)[:400], "file", ["corrupt or truncated"]),
        (b"", "file", ["empty"]),
        (make_image(40, 30), "image", ["missing", "'image'"]),
    ],
    ids=["not-an-image", "truncated", "empty", "wrong-field"],
)
def test_an_unusable_upload_is_refused_naming_the_field(
    api: Api, data: bytes, field: str, words: list[str]
) -> None:
    assert_invalid_file(upload(api, data, field=field), 422, *words)


@pytest.mark.parametrize(
    "send",
    [
        {"json": {"file": "https://example.com/a.png"}},
        {"data": {"file": "not a file part"}, "files": {"other": ("a", b"x")}},
        {"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data"}},
    ],
    ids=["json-body", "text-field", "malformed-multipart"],
)
def test_a_body_without_a_file_part_is_refused(api: Api, send: dict[str, Any]) -> None:
    send = dict(send)
    headers = {**api.headers, **send.pop("headers", {})}
    response = api.http.post(f"{api.base}/v1/files", headers=headers, timeout=30, **send)
    assert_invalid_file(response, 422, "multipart/form-data")


def test_an_upload_needs_a_key(api: Api) -> None:
    response = upload(api, make_image(40, 30), headers={})
    assert response.status_code == 401
    assert response.json()["error_code"] == 401001


def test_the_input_limits_apply(isolated: InProcessServer) -> None:
    api = isolated.api()
    too_many_pixels = make_image(700, 500)  # 350,000 pixels
    assert_invalid_file(upload(api, too_many_pixels), 422, "MP limit")
    too_many_bytes = make_image(100, 100) + b"\0" * MAX_BYTES
    assert_invalid_file(upload(api, too_many_bytes), 413, str(MAX_BYTES))


# --- the worker -----------------------------------------------------------------------------


def test_an_upload_url_works_in_a_submit_read_from_storage(isolated: InProcessServer) -> None:
    api = isolated.api()
    url = upload_ok(api, make_image(320, 180, "JPEG"))["url"]
    # Behind a proxy the public URL has another host and a path prefix; only its end and its
    # signature say it is ours. Neither URL could be fetched: 127.0.0.1 is refused here.
    behind_proxy = url.replace(api.base, "https://retouch.invalid/edit")
    result = api.wait(
        api.submit_ok({"prompt": "x", "image_urls": [url, behind_proxy], "resolution": "0.5K"})
    )
    assert result["status"] == "succeeded", result
    assert result["generation"]["input_sizes"] == [[320, 180], [320, 180]]
    assert result["generation"]["aspect_ratio"] == "16:9"


def test_a_tampered_upload_url_is_fetched_like_any_url(isolated: InProcessServer) -> None:
    api = isolated.api()
    url = upload_ok(api, make_image(64, 64))["url"]
    assert "&sig=" in url
    tampered = url[:-1] + ("1" if url.endswith("0") else "0")  # the signature comes last
    # Not ours, so fetched: and this server refuses 127.0.0.1.
    assert failed_message(api, tampered).startswith("image_urls[0]: refused address 127.0.0.1")


def test_an_expired_or_deleted_upload_fails_the_job(isolated: InProcessServer) -> None:
    api = isolated.api()
    name = stored_name(upload_ok(api, make_image(64, 64))["url"])
    expired = signed_url(isolated, name, -60)
    assert failed_message(api, expired) == (
        "image_urls[0]: this file URL has expired: upload it again (POST /v1/files) and "
        "submit the new URL"
    )
    gone = signed_url(isolated, "00000000-0000-4000-8000-000000000000/upload.png", 600)
    message = failed_message(api, gone)
    assert message.startswith("image_urls[0]: this file no longer exists")
    assert "upload it again" in message
