"""The API in-process and the worker loop in a thread, with a fake engine: the unit tier's
server. The app runs under starlette's TestClient (its lifespan, and so the webhook
dispatcher, runs); the worker is the real `retouch.worker.runner.Worker`, wired as
`retouch worker` wires it, with an engine that paints solid colours instead of denoising."""

from __future__ import annotations

import base64
import hashlib
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from starlette.testclient import TestClient

from e2e_support import Api, free_port, make_image, server_env
from retouch.api.app import create_app
from retouch.config import Settings
from retouch.engine.base import (
    CancelCheck,
    EditCancelled,
    EditRequest,
    EngineInfo,
    StepCallback,
)
from retouch.engine.diffusers_engine import DiffusersEngine
from retouch.served_endpoints import load_endpoints
from retouch.services import Services, open_services
from retouch.worker.runner import ResidentEngines, Worker, build_worker

# The settings server_env gives a real test server (RETOUCH_FETCH_ALLOW=127.0.0.1, …), as
# Settings fields.
SERVER_SETTINGS = {
    name.removeprefix("RETOUCH_").lower(): value
    for name, value in server_env().items()
    if name.startswith("RETOUCH_")
} | {
    # The shared server's key submits for the whole session; the rate's own tests (in
    # tests/unit/api/test_limits.py) set one.
    "key_submit_rate": ""
}
HELD_PROMPT = "hold the worker"
# The base URL of app_client's TestClient.
APP_CLIENT_BASE = "http://127.0.0.1:8765"


@dataclass
class FakeEngine:
    """Satisfies retouch.engine.base.Engine: solid RGB images of exactly the requested size, a
    colour per (prompt, seed), `steps` calls of on_step, and EditCancelled when should_cancel
    says so. A job whose prompt starts with HELD_PROMPT runs until its gate opens (see
    `hold`), so a test can keep the worker busy without timing anything."""

    steps: int = 2
    info: EngineInfo = field(
        default_factory=lambda: EngineInfo(
            engine="fake",
            model="preview",
            preview=True,
            max_pixels=1024 * 1024,
            size_multiple=16,
            min_side=256,
        )
    )
    gates: dict[str, threading.Event] = field(default_factory=dict)
    batches: list[list[str]] = field(default_factory=list)

    # The real engines' rule, read from self.info (the module imports no torch).
    native_size = DiffusersEngine.native_size

    def hold(self) -> tuple[str, threading.Event]:
        """A prompt whose job waits for the returned gate to be set."""
        prompt = f"{HELD_PROMPT} {uuid.uuid4().hex}"
        self.gates[prompt] = threading.Event()
        return prompt, self.gates[prompt]

    def edit(
        self,
        request: EditRequest,
        on_step: StepCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> list[Image.Image]:
        gate = self.gates.get(request.prompt)
        for step in range(1, self.steps + 1):
            while gate is not None and not gate.wait(0.01):
                if should_cancel is not None and should_cancel():
                    raise EditCancelled
            if should_cancel is not None and should_cancel():
                raise EditCancelled
            if on_step is not None:
                on_step(step, self.steps)
        return [self._paint(request, seed) for seed in request.seeds]

    def edit_batch(
        self,
        requests: list[EditRequest],
        on_step: StepCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> list[list[Image.Image]]:
        """Each request in turn; `batches` records the prompts of every call."""
        self.batches.append([request.prompt for request in requests])
        return [self.edit(request, on_step, should_cancel) for request in requests]

    @staticmethod
    def _paint(request: EditRequest, seed: int) -> Image.Image:
        digest = hashlib.sha256(f"{request.prompt}\0{seed}".encode()).digest()
        color = (digest[0], digest[1] | 0x80, digest[2])
        return Image.new("RGB", (request.width, request.height), color)


class AppTransport(httpx.BaseTransport):
    """An httpx transport into the app under a TestClient (which is an httpx2 client): what
    the SDK and the tests' httpx clients send goes through the app in-process. A body without
    a Content-Length is passed on as a stream, so it stays chunked."""

    def __init__(self, app: TestClient) -> None:
        self.app = app

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        chunked = "content-length" not in request.headers
        answer = self.app.request(
            request.method,
            str(request.url),
            headers=list(request.headers.raw),
            content=iter(request.stream) if chunked else request.read(),  # type: ignore[arg-type]
        )
        return httpx.Response(
            answer.status_code, headers=answer.headers.raw, content=answer.content, request=request
        )


@dataclass
class InProcessServer:
    settings: Settings
    services: Services
    transport: AppTransport
    engine: FakeEngine
    worker: Worker
    key: str

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @property
    def base(self) -> str:
        return str(self.transport.app.base_url).rstrip("/")

    def http(self, transport: httpx.BaseTransport | None = None) -> httpx.Client:
        """An httpx client into the app, through `transport` when given (it wraps ours)."""
        return httpx.Client(transport=transport or self.transport, timeout=30)

    def api(self, key: str | None = None) -> Api:
        return Api(self.base, key or self.key, self.http())

    def new_key(self, name: str) -> str:
        return self.services.keys.create(name)[1]

    @contextmanager
    def held_job(self, api: Api, **body: Any) -> Iterator[str]:
        """A job that keeps the worker busy, running once this yields; let go (and finished)
        when the block ends, so the jobs queued behind it run."""
        prompt, gate = self.engine.hold()
        image = body.pop("image_urls", ["data:image/png;base64," + SQUARE_PNG])
        request_id = api.submit_ok({"prompt": prompt, "image_urls": image, **body})
        try:
            api.wait_for_status(request_id, "in_progress")
            yield request_id
        finally:
            gate.set()
            api.wait(request_id)


# A held job needs no image server.
SQUARE_PNG = base64.b64encode(make_image(64, 64)).decode()


@contextmanager
def app_client(data_dir: Path, **settings: Any) -> Iterator[TestClient]:
    """The app alone (no worker) on a fresh data dir, with these settings, under a
    TestClient on a fixed base URL."""
    opened = Settings.model_validate({"data_dir": data_dir, **settings})
    services = open_services(opened)
    try:
        yield TestClient(create_app(opened, services), base_url=APP_CLIENT_BASE)
    finally:
        services.close()


@contextmanager
def in_process_server(
    data_dir: Path,
    *,
    worker: bool = True,
    before_worker: Callable[[Services], None] | None = None,
    **overrides: Any,
) -> Iterator[InProcessServer]:
    """A data dir served by create_app under a TestClient, with a Worker thread on it unless
    `worker` is False (as `retouch serve --no-worker`: jobs wait in the queue). `overrides`
    are Settings fields. `before_worker` adjusts the services before any thread uses them
    (an engine's event listeners, say, which must not change while a thread connects)."""
    settings = Settings.model_validate({"data_dir": data_dir, **SERVER_SETTINGS, **overrides})
    services = open_services(settings)
    if before_worker is not None:
        before_worker(services)
    endpoints = load_endpoints(settings)
    engine = FakeEngine()
    runner = build_worker(settings, services, endpoints, ResidentEngines(lambda _: engine))
    thread = threading.Thread(target=runner.run_forever, name="in-process-worker", daemon=True)
    if worker:
        thread.start()
    try:
        # The app's URLs name a port nothing listens on: a URL the worker does not recognise
        # as its own is fetched, and gets nowhere (or is refused, without 127.0.0.1 allowed).
        base_url = f"http://127.0.0.1:{free_port()}"
        with TestClient(create_app(settings, services, endpoints), base_url=base_url) as app:
            yield InProcessServer(
                settings,
                services,
                AppTransport(app),
                engine,
                runner,
                services.keys.create("default")[1],
            )
    finally:
        runner.stop()
        if worker:
            thread.join(10)
        services.close()
    assert not thread.is_alive(), "the worker did not stop"
