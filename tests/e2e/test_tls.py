"""`retouch serve --ssl-certfile --ssl-keyfile` over real TLS: a certificate for 127.0.0.1
from a throwaway CA (trustme), with one API process and its worker (a job run to its
downloaded result), and with two API processes and no worker (a job queued, then cancelled:
running one again would only cost the tier time). The refusals of bad files are checked
in-process, in tests/unit/test_cli.py."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme

from e2e_support import Api, ImageServer, RetouchProcess, seed_data_dir, server_env

EDIT = {"prompt": "x", "resolution": "0.5K"}


@dataclass
class HttpsProcess(RetouchProcess):
    worker: bool = True

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def trusting(ca: trustme.CA) -> ssl.SSLContext:
    """A client's context that trusts the test CA only."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture(scope="module", params=[1, 2], ids=["1-api-process", "2-api-processes"])
def https_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    models_cache: Path,
    ca: trustme.CA,
    backend: str,
) -> Iterator[HttpsProcess]:
    """serve with a certificate for 127.0.0.1, on each backend in turn (hence `backend`)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key, ca_file = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
    issued = ca.issue_cert("127.0.0.1")
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    data_dir = folder / "data"
    seed_data_dir(data_dir, models_cache)
    processes = request.param
    server = HttpsProcess(data_dir, server_env(), worker=processes == 1)
    try:
        with pytest.MonkeyPatch.context() as patch:
            # serve() waits for the server with a bare httpx.get of its base, which trusts
            # SSL_CERT_FILE: only this test's process, and only while it waits.
            patch.setenv("SSL_CERT_FILE", str(ca_file))
            server.serve(
                "--ssl-certfile",
                str(cert),
                "--ssl-keyfile",
                str(key),
                "--api-processes",
                str(processes),
                *([] if server.worker else ["--no-worker"]),
            )
        server.read_first_key()
        yield server
    finally:
        server.stop()


def test_serve_answers_over_https_and_hands_out_https_urls(
    https_server: HttpsProcess, trusting: ssl.SSLContext, image_server: ImageServer
) -> None:
    base = f"https://127.0.0.1:{https_server.port}"
    assert f"Retouch API on {base} (playground: {base}/," in https_server.log_text()
    client = httpx.Client(
        verify=trusting, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)
    )
    assert client.get(f"{base}/healthz").status_code == 200

    assert https_server.key is not None
    api = Api(base, https_server.key, client)
    submitted = api.submit({**EDIT, "image_urls": [image_server.url("/square.png")]})
    assert submitted.status_code == 200, submitted.text
    body = submitted.json()
    for name in ("status_url", "result_url", "cancel_url"):
        assert body[name].startswith(f"{base}/v1/requests/{body['request_id']}/"), body

    if not https_server.worker:
        cancelled = api.cancel(body["request_id"])
        assert cancelled.status_code == 202 and cancelled.json()["outcome"] == "cancelled"
        return
    result = api.wait(body["request_id"])
    assert result["status"] == "succeeded", result
    image_url = result["output"]["image"]
    assert image_url.startswith(f"{base}/"), image_url
    _, image = api.download(image_url)
    assert image.format == "PNG"


def test_plain_http_to_the_https_port_fails(
    https_server: HttpsProcess, trusting: ssl.SSLContext
) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{https_server.port}/healthz", timeout=10)
    # The server is no worse for it.
    answer = httpx.get(f"{https_server.base}/healthz", verify=trusting, timeout=10)
    assert answer.status_code == 200
