"""The usual calls of fal's own Python client (`fal-client` from PyPI, unmodified), run by
tests/e2e/test_fal_client.py in a process of their own: the client reads FAL_KEY,
FAL_QUEUE_RUN_HOST and FAL_RUN_HOST when it is imported, and trusts SSL_CERT_FILE, all set
by the test. Prints what each call answered, as one JSON document."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import fal_client


def describe(status: fal_client.Status) -> dict[str, Any]:
    described: dict[str, Any] = {"type": type(status).__name__}
    if isinstance(status, fal_client.Queued):
        described["position"] = status.position
    if isinstance(status, fal_client.InProgress | fal_client.Completed):
        described["logs"] = [line["message"] for line in status.logs or []]
    if isinstance(status, fal_client.Completed):
        described.update(metrics=status.metrics, error=status.error, error_type=status.error_type)
    return described


def main() -> None:
    app, image = sys.argv[1], sys.argv[2]
    edit = {"prompt": "make it blue", "image_urls": [image], "resolution": "0.5K"}
    out: dict[str, Any] = {}

    # First, while the test keeps the worker busy: a request cancelled in the queue.
    queued = fal_client.submit(app, edit)
    fal_client.cancel(app, queued.request_id)
    out["cancelled"] = describe(fal_client.status(app, queued.request_id))

    handle = fal_client.submit(app, {**edit, "safety_tolerance": "2", "seed": 7})
    polled = []
    while True:
        status = fal_client.status(app, handle.request_id, with_logs=True)
        polled.append(describe(status))
        if isinstance(status, fal_client.Completed):
            break
        time.sleep(0.2)
    out["submitted"] = {
        "request_id": handle.request_id,
        "polled": polled,
        "result": fal_client.result(app, handle.request_id),
    }

    updates: list[dict[str, Any]] = []
    enqueued: list[str] = []
    out["subscribed"] = {
        "result": fal_client.subscribe(
            app,
            {**edit, "num_images": 2, "sync_mode": True},
            with_logs=True,
            on_enqueue=enqueued.append,
            on_queue_update=lambda update: updates.append(describe(update)),
        ),
        "updates": updates,
        "enqueued": enqueued,
    }

    out["run"] = fal_client.run(app, edit)  # FAL_RUN_HOST: the synchronous route

    try:
        fal_client.submit(app, {"prompt": " ", "image_urls": [image], "aspect_ratio": "8:1"})
    except fal_client.FalClientHTTPError as error:
        out["invalid"] = {"status": error.status_code, "body": error.response.json()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
