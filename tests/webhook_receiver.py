"""A webhook receiver on 127.0.0.1 for the tests: it verifies every delivery's signature with
the `standardwebhooks` library and answers the statuses it is told to; and the calls a webhook
test makes on the API (any `Api`: a real server's or an in-process one's)."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from e2e_support import Api, make_image


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    """What the receiver answered."""
    verified: Any
    """The parsed body when the signature verified with the receiver's secret, else None."""


@dataclass
class Receiver:
    base: str
    secret: str | None = None
    answers: list[int] = field(default_factory=list)
    """Statuses for the next requests, in order; 200 once used up."""
    delay: float = 0.0
    """Seconds to wait before answering."""
    received: list[Received] = field(default_factory=list)
    connections: int = 0
    active: int = 0
    most_at_once: int = 0
    """The most requests it was answering at one time."""
    changed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"{self.base}/hook"

    def answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> Received:
        headers = {name.lower(): value for name, value in handler.headers.items()}
        verified: Any = None
        if self.secret is not None:
            try:
                verified = Webhook(self.secret).verify(body, headers)
            except WebhookVerificationError:
                verified = None
        with self.changed:
            status = self.answers.pop(0) if self.answers else 200
            self.active += 1
            self.most_at_once = max(self.most_at_once, self.active)
        return Received(handler.path, headers, body, status, verified)

    def record(self, received: Received) -> None:
        with self.changed:
            self.active -= 1
            self.received.append(received)
            self.changed.notify_all()

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 30) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: predicate(self.received), timeout):
                raise AssertionError(f"receiver: condition not met; got {self.received}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver

    def verify_request(self, request: Any, client_address: Any) -> bool:
        # Counts connections, not requests: a refused webhook must never get this far.
        with self.receiver.changed:
            self.receiver.connections += 1
        return True


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *_: Any) -> None:
        pass

    def do_POST(self) -> None:
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        received = receiver.answer(self, body)
        if receiver.delay:
            time.sleep(receiver.delay)
        try:
            self.send_response(received.status)
            if received.status in (301, 302, 307, 308):
                self.send_header("Location", f"{receiver.base}/elsewhere")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the sender gave up (its timeout)
        receiver.record(received)


@contextmanager
def webhook_receiver(secret: str | None = None) -> Iterator[Receiver]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.receiver = Receiver(f"http://127.0.0.1:{server.server_address[1]}", secret)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.receiver
    finally:
        server.shutdown()
        server.server_close()


EDIT = "google/nano-banana-2/edit"
# Retries at once, for the tests that watch several attempts.
QUICK_RETRIES: dict[str, Any] = {"webhook_first_retry_seconds": 0.2, "webhook_retry_factor": 1}


def submit_with_webhook(api: Api, webhook: str, image_url: str) -> httpx.Response:
    return api.http.post(
        f"{api.base}/v1/models/{EDIT}",
        params={"webhook": webhook},
        json={"prompt": "make it blue", "image_urls": [image_url], "resolution": "0.5K"},
        headers=api.headers,
        timeout=30,
    )


def submitted(api: Api, webhook: str, image_url: str) -> str:
    response = submit_with_webhook(api, webhook, image_url)
    assert response.status_code == 200, response.text
    return str(response.json()["request_id"])


def secret(api: Api, *, rotate: bool = False) -> str:
    response = api.http.request(
        "POST" if rotate else "GET",
        f"{api.base}/v1/webhooks/secret",
        headers=api.headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    value = response.json()["secret"]
    assert isinstance(value, str)
    return value


def wait_for_webhook(
    api: Api, request_id: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60
) -> dict[str, Any]:
    """The result's `webhook` field once `predicate` holds for it."""
    deadline = time.monotonic() + timeout
    webhook: dict[str, Any] = {}
    while time.monotonic() < deadline:
        webhook = api.result(request_id).json().get("webhook") or {}
        if webhook and predicate(webhook):
            return webhook
        time.sleep(0.05)
    raise AssertionError(f"webhook of {request_id} never got there: {webhook}")


def codes(webhook: dict[str, Any]) -> list[int | None]:
    return [attempt["status_code"] for attempt in webhook["attempts"]]


def data_uri() -> str:
    return "data:image/png;base64," + base64.b64encode(make_image(64, 64)).decode()


def cancelled_with_webhook(api: Api, webhook: str) -> str:
    request_id = submitted(api, webhook, data_uri())
    assert api.cancel(request_id).json()["outcome"] == "cancelled"
    return request_id
