"""Replicate's own Python client (`replicate` from PyPI, unmodified) against a live `retouch
serve`: only its base URL is changed. run, predictions.create + wait, cancel, list, a 422,
and a webhook whose signature `replicate.webhooks.validate` accepts."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import replicate
from PIL import Image
from replicate.client import Client
from replicate.exceptions import ReplicateError
from replicate.webhook import WebhookSigningSecret

from client_support import occupy_worker
from e2e_support import Api, ImageServer, RetouchProcess, run_node_test
from webhook_receiver import webhook_receiver

# On SQLite only: Replicate's protocol is a translation above the job store.
pytestmark = pytest.mark.sqlite_only

MODEL = "google/nano-banana-2"


@pytest.fixture(scope="module")
def client(server: RetouchProcess) -> Client:
    assert server.key is not None
    return Client(api_token=server.key, base_url=f"{server.base}/replicate")


def edit(image_server: ImageServer, **extra: Any) -> dict[str, Any]:
    return {
        "prompt": "make it blue",
        "image_input": [image_server.url("/square.png")],
        "resolution": "0.5K",
        **extra,
    }


def test_run_waits_and_returns_the_image(client: Client, image_server: ImageServer) -> None:
    output = client.run(MODEL, input=edit(image_server, output_format="jpg"), use_file_output=False)
    assert isinstance(output, str) and output.split("?")[0].endswith(".jpg"), output
    image = Image.open(io.BytesIO(httpx.get(output, timeout=30).raise_for_status().content))
    assert image.format == "JPEG" and image.size == (512, 512)


def test_create_then_wait_shows_the_prediction(
    client: Client, image_server: ImageServer, server: RetouchProcess
) -> None:
    prediction = client.models.predictions.create(MODEL, input=edit(image_server, num_images=2))
    assert str(prediction.status) == "starting" and prediction.model == MODEL
    assert prediction.input is not None and prediction.input["image_input"] == [
        image_server.url("/square.png")
    ]
    assert prediction.input["aspect_ratio"] == "match_input_image"
    prediction.wait()
    assert prediction.status == "succeeded", prediction.error
    assert isinstance(prediction.output, list) and len(prediction.output) == 2
    assert prediction.metrics is not None and prediction.metrics["predict_time"] > 0
    assert prediction.logs and "generating 2 image(s)" in prediction.logs
    assert prediction.completed_at is not None and prediction.urls is not None
    # The same job through the contract's own surface.
    result = server.api().result(prediction.id).json()
    assert result["status"] == "succeeded" and len(result["output"]["images"]) == 2
    listed = client.predictions.list()
    assert prediction.id in [item.id for item in listed.results]


def test_a_prediction_of_a_version(client: Client, image_server: ImageServer) -> None:
    """predictions.create(version=…): POST /v1/predictions, as for a community model."""
    version = client.models.predictions.create(MODEL, input=edit(image_server)).version
    prediction = client.predictions.create(version=version, input=edit(image_server), wait=30)
    assert prediction.version == version and prediction.model == MODEL
    assert prediction.status == "succeeded", prediction.error
    with pytest.raises(ReplicateError) as raised:
        client.predictions.create(version="0" * 64, input=edit(image_server))
    assert raised.value.status == 404 and version in str(raised.value.detail)


def test_stream_sends_logs_then_the_output_then_done(
    client: Client, image_server: ImageServer
) -> None:
    prediction = client.models.predictions.create(MODEL, input=edit(image_server))
    events = list(prediction.stream())
    kinds = [event.event.value for event in events]
    assert kinds[0] == "logs" and kinds[-2:] == ["output", "done"], kinds
    assert events[-2].data.split("?")[0].endswith(".png")


def test_cancel_a_queued_prediction(client: Client, image_server: ImageServer, api: Api) -> None:
    occupy_worker(api, image_server, seconds=4)
    prediction = client.models.predictions.create(MODEL, input=edit(image_server))
    prediction.cancel()
    assert prediction.status == "canceled"
    assert client.predictions.get(prediction.id).status == "canceled"


def test_bad_input_is_a_422_naming_replicates_fields(client: Client) -> None:
    with pytest.raises(ReplicateError) as raised:
        client.models.predictions.create(
            MODEL, input={"prompt": " ", "image_input": ["ftp://nowhere"], "aspect_ratio": "8:1"}
        )
    error = raised.value
    assert error.status == 422 and error.title == "Input validation failed"
    assert error.detail is not None
    for field in ("input.prompt", "input.image_input[0]", "input.aspect_ratio"):
        assert field in error.detail


def test_unknown_model_is_a_404(client: Client) -> None:
    with pytest.raises(ReplicateError) as raised:
        client.models.predictions.create("acme/nothing", input={})
    assert raised.value.status == 404 and "google/nano-banana-2" in str(raised.value.detail)


@pytest.fixture
def secret(client: Client) -> Iterator[str]:
    yield client.webhooks.default.secret().key


def test_webhook_is_the_prediction_and_validates(
    client: Client, image_server: ImageServer, secret: str
) -> None:
    with webhook_receiver(secret) as receiver:
        prediction = client.models.predictions.create(
            MODEL,
            input=edit(image_server),
            webhook=receiver.url,
            webhook_events_filter=["completed"],
        )
        receiver.wait_for(lambda received: len(received) == 1, timeout=60)
    delivery = receiver.received[0]
    body = json.loads(delivery.body)
    assert body["id"] == prediction.id and body["status"] == "succeeded"
    assert isinstance(body["output"], str) and body["input"]["prompt"] == "make it blue"
    replicate.webhooks.validate(
        headers=delivery.headers,
        body=delivery.body.decode(),
        secret=WebhookSigningSecret(key=secret),
    )


def test_the_npm_client(server: RetouchProcess, image_server: ImageServer) -> None:
    """replicate (npm): run, and create + wait + get (tests/node/replicate.test.js)."""
    assert server.key is not None
    done = run_node_test(
        "replicate.test.js",
        {
            "RETOUCH_BASE": server.base,
            "RETOUCH_KEY": server.key,
            "IMAGE_URL": image_server.url("/square.png"),
        },
    )
    assert done.returncode == 0, done.stdout + done.stderr
