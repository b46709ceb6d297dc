"""The API and the worker on S3 storage (moto's server on 127.0.0.1): an upload, a job that
reads it, and the output served from the bucket through our own signed URLs, with HEAD and
one Range, exactly as from the local folder."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from e2e_support import make_image
from retouch.api.app import create_app

from ..inprocess import InProcessServer, in_process_server
from ..moto_s3 import REGION, MotoS3, moto_s3
from .test_uploads import stored_name, upload_ok


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoS3]:
    with moto_s3() as server:
        yield server


@contextmanager
def s3_server(moto: MotoS3, data_dir: Path, **overrides: Any) -> Iterator[InProcessServer]:
    with in_process_server(
        data_dir,
        storage_url=f"s3://{moto.new_bucket()}/retouch",
        s3_endpoint_url=moto.endpoint_url,
        s3_region=REGION,
        **overrides,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def on_s3(moto: MotoS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    with s3_server(moto, tmp_path_factory.mktemp("s3-data")) as server:
        yield server


def edited(server: InProcessServer, upload_url: str) -> dict[str, Any]:
    api = server.api()
    result = api.wait(
        api.submit_ok({"prompt": "x", "image_urls": [upload_url], "resolution": "0.5K"})
    )
    assert result["status"] == "succeeded", result
    return result


def test_upload_edit_and_download_from_s3(on_s3: InProcessServer) -> None:
    api = on_s3.api()
    upload = upload_ok(api, make_image(320, 180, "PNG"))
    assert on_s3.services.storage.stat(stored_name(upload["url"])) is not None
    assert api.http.get(upload["url"]).content[:8] == b"\x89PNG\r\n\x1a\n"

    url = edited(on_s3, upload["url"])["output"]["image"]
    assert url.startswith(f"{api.base}/v1/files/")
    full = api.http.get(url)
    assert full.status_code == 200 and full.headers["content-type"] == "image/png"
    assert full.headers["x-content-type-options"] == "nosniff"
    head = api.http.head(url)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(full.content)
    assert head.headers["etag"] == full.headers["etag"]
    part = api.http.get(url, headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == full.content[:10]
    assert part.headers["content-range"] == f"bytes 0-9/{len(full.content)}"
    tail = api.http.get(url, headers={"Range": "bytes=-4"})
    assert tail.status_code == 206 and tail.content == full.content[-4:]
    refused = api.http.get(url, headers={"Range": f"bytes={len(full.content)}-"})
    assert refused.status_code == 416 and refused.json()["error_code"] == 416001
    # Nothing was written to the data dir's outputs folder.
    assert not on_s3.settings.outputs_dir.exists() or not any(on_s3.settings.outputs_dir.iterdir())


def test_a_deleted_output_is_not_found(on_s3: InProcessServer) -> None:
    api = on_s3.api()
    upload = upload_ok(api, make_image(64, 64, "PNG"))
    on_s3.services.storage.delete(stored_name(upload["url"]))
    assert api.http.get(upload["url"]).status_code == 404
    assert api.http.head(upload["url"]).status_code == 404


def test_presign_hands_out_the_buckets_urls_for_outputs(on_s3: InProcessServer) -> None:
    """RETOUCH_S3_PRESIGN: an app built with it signs outputs with the bucket's key; uploads
    keep our URLs. moto accepts tampered and expired presigned URLs too, so this shows only
    that they are made and work."""
    settings = on_s3.settings.model_copy(update={"s3_presign": True})
    app = create_app(settings, on_s3.services, [])
    presigning = app.state.retouch.responses
    name = stored_name(upload_ok(on_s3.api(), make_image(64, 64, "PNG"))["url"])
    url = presigning.output_url(on_s3.base, name)
    assert url.startswith(f"{on_s3.settings.s3_endpoint_url}/") and "X-Amz-Signature=" in url
    assert f"X-Amz-Expires={settings.url_ttl_seconds}" in url
    assert httpx.get(url).content[:8] == b"\x89PNG\r\n\x1a\n"
    assert presigning.file_url(on_s3.base, name).startswith(f"{on_s3.base}/v1/files/")
    # The pages may show the bucket's images (and connect nowhere else).
    policy = TestClient(app).get("/").headers["content-security-policy"]
    assert f"img-src 'self' blob: data: {settings.s3_endpoint_url};" in policy
