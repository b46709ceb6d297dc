"""Helpers for the SDK and CLI tests: httpx transports that record or disturb the traffic
between a client and a server (a real one, or the in-process app through its transport), and a
job that keeps the shared worker busy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import httpx
from PIL import Image

from e2e_support import Api, ImageServer
from retouch.client.models import EditFields

EDIT = "/v1/models/google/nano-banana-2/edit"
# Small outputs keep the preview engine fast.
SMALL: EditFields = {"resolution": "0.5K", "aspect_ratio": "1:1"}


class RecordingTransport(httpx.BaseTransport):
    """`inner` (by default a real connection), remembering each request's method and path."""

    def __init__(self, inner: httpx.BaseTransport | None = None) -> None:
        self.inner = inner or httpx.HTTPTransport()
        self.calls: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((request.method, request.url.path))
        return self.answer(request)

    def answer(self, request: httpx.Request) -> httpx.Response:
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()

    def paths(self, suffix: str) -> list[str]:
        return [path for _, path in self.calls if path.endswith(suffix)]


class DropFirstSubmit(RecordingTransport):
    """Lets the first submit reach the server, reads its answer, then fails as a dropped
    connection would: the job exists, the client never hears of it."""

    def __init__(self, inner: httpx.BaseTransport | None = None) -> None:
        super().__init__(inner)
        self.dropped: list[httpx.Response] = []
        self.answers: list[httpx.Response] = []

    def answer(self, request: httpx.Request) -> httpx.Response:
        response = super().answer(request)
        if request.method != "POST" or request.url.path != EDIT:
            return response
        response.read()
        if not self.dropped:
            self.dropped.append(response)
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        self.answers.append(response)
        return response


class NoStreamRoute(RecordingTransport):
    """A server without the event stream: /stream answers 404002, as an unknown route does."""

    def answer(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/stream"):
            body = {"error_code": 404002, "error_message": "no such route"}
            return httpx.Response(404, json=body, request=request)
        return super().answer(request)


class BusyFirst(RecordingTransport):
    """Answers the first `count` requests to paths ending in `suffix` with 503 (Retry-After
    0), as an overloaded server or a proxy would."""

    def __init__(
        self, suffix: str, count: int = 1, inner: httpx.BaseTransport | None = None
    ) -> None:
        super().__init__(inner)
        self.suffix = suffix
        self.count = count
        self.refused = 0

    def answer(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(self.suffix) and self.refused < self.count:
            self.refused += 1
            body = {"error_code": 503001, "error_message": "busy"}
            return httpx.Response(503, json=body, headers={"Retry-After": "0"}, request=request)
        return super().answer(request)


# An answer of ScriptedServer: (status, JSON body, headers), or STALL.
Answer = tuple[int, Any, Mapping[str, str]]
STALL = None
Routes = Mapping[tuple[str, str], Answer | None]


class ScriptedServer:
    """A stand-in Retouch server on localhost, for what a real one does not do on demand:
    `routes` maps (method, path) to an answer, or to STALL (take the request and never
    answer, as a hung server does, until the server stops). Other paths answer 404002.
    Reachable from a CLI process too, unlike an httpx.MockTransport."""

    def __init__(self, routes: Routes) -> None:
        self.routes = dict(routes)
        self.calls: list[tuple[str, str]] = []
        self.released = threading.Event()
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                scripted.answer(self)

            def do_POST(self) -> None:
                scripted.answer(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?")[0]
        self.calls.append((handler.command, path))
        length = int(handler.headers.get("content-length") or 0)
        handler.rfile.read(length)
        key = (handler.command, path)
        if key in self.routes and self.routes[key] is STALL:
            self.released.wait(60)
            handler.close_connection = True
            return
        not_found: Answer = (404, {"error_code": 404002, "error_message": "no such route"}, {})
        status, body, headers = self.routes.get(key) or not_found
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def paths(self, suffix: str) -> list[str]:
        return [path for _, path in self.calls if path.endswith(suffix)]

    def __enter__(self) -> Self:
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def occupy_worker(api: Api, image_server: ImageServer, seconds: float = 2) -> str:
    """A job whose input takes `seconds` to fetch, running once this returns: the next jobs
    wait in the queue behind it."""
    request_id = api.submit_ok(
        {"prompt": "x", "image_urls": [image_server.url(f"/slow.png?seconds={seconds}")], **SMALL}
    )
    api.wait_for_status(request_id, "in_progress")
    return request_id


def sizes_of(paths: list[Path]) -> list[tuple[str | None, tuple[int, int]]]:
    opened = [Image.open(path) for path in paths]
    return [(image.format, image.size) for image in opened]


def client_env(home: Path, **values: str) -> dict[str, str]:
    """An environment for the CLI without the caller's RETOUCH_* settings or config file."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RETOUCH_")}
    env["XDG_CONFIG_HOME"] = str(home / "config")
    env["HOME"] = str(home)
    env["COLUMNS"] = "200"
    env.update(values)
    return env


def retouch(
    *args: str,
    env: dict[str, str],
    cwd: Path | None = None,
    timeout: float = 120,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "retouch", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )
