"""A webhook receiver on 127.0.0.1 for the tests: it verifies every delivery's signature with
the `standardwebhooks` library and answers the statuses it is told to."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


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
