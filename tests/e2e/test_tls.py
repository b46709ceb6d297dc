"""`retouch serve --ssl-certfile --ssl-keyfile` over real TLS: a certificate for 127.0.0.1
from a throwaway CA (trustme), with one API process and its worker (a job run to its
downloaded result), and with two API processes and no worker (a job queued, then cancelled:
running one again would only cost the tier time). On SQLite only: TLS is the HTTP server's,
not the job store's. The refusals of bad files are checked in-process, in
tests/unit/test_cli.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from e2e_support import Api, ImageServer, RetouchProcess, TlsFiles, seed_data_dir, server_env

pytestmark = pytest.mark.sqlite_only
EDIT = {"prompt": "x", "resolution": "0.5K"}


@pytest.fixture(scope="module", params=[1, 2], ids=["1-api-process", "2-api-processes"])
def https_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, models_cache: Path
) -> Iterator[RetouchProcess]:
    folder = tmp_path_factory.mktemp("tls")
    data_dir = folder / "data"
    seed_data_dir(data_dir, models_cache)
    processes = request.param
    server = RetouchProcess(data_dir, server_env(), tls=TlsFiles.issue(folder / "tls"))
    try:
        server.serve(
            "--api-processes", str(processes), *([] if processes == 1 else ["--no-worker"])
        )
        server.read_first_key()
        yield server
    finally:
        server.stop()


def test_serve_answers_over_https_and_hands_out_https_urls(
    https_server: RetouchProcess, image_server: ImageServer, request: pytest.FixtureRequest
) -> None:
    base = https_server.base
    assert base.startswith("https://")
    assert f"Retouch API on {base} (playground: {base}/," in https_server.log_text()
    assert https_server.tls is not None
    client = httpx.Client(
        verify=https_server.tls.trusting(),
        timeout=30,
        limits=httpx.Limits(max_keepalive_connections=0),
    )
    assert client.get(f"{base}/healthz").status_code == 200

    assert https_server.key is not None
    api = Api(base, https_server.key, client)
    submitted = api.submit({**EDIT, "image_urls": [image_server.url("/square.png")]})
    assert submitted.status_code == 200, submitted.text
    body = submitted.json()
    for name in ("status_url", "result_url", "cancel_url"):
        assert body[name].startswith(f"{base}/v1/requests/{body['request_id']}/"), body

    if "2-api-processes" in request.node.name:
        cancelled = api.cancel(body["request_id"])
        assert cancelled.status_code == 202 and cancelled.json()["outcome"] == "cancelled"
        return
    result = api.wait(body["request_id"])
    assert result["status"] == "succeeded", result
    image_url = result["output"]["image"]
    assert image_url.startswith(f"{base}/"), image_url
    _, image = api.download(image_url)
    assert image.format == "PNG"


def test_plain_http_to_the_https_port_fails(https_server: RetouchProcess) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{https_server.port}/healthz", timeout=10)
    # The server is no worse for it.
    assert https_server.tls is not None
    answer = httpx.get(
        f"{https_server.base}/healthz", verify=https_server.tls.trusting(), timeout=10
    )
    assert answer.status_code == 200
