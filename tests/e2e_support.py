"""Real processes for end-to-end tests: a local image server and `retouch serve`/`worker`."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx
from PIL import Image

DONE_STATUSES = {"completed", "cancelled"}


# Which database the processes of a data dir use: None runs each data dir on its own SQLite
# file (the default); tests/e2e/conftest.py sets a factory of new PostgreSQL databases to run
# the whole end-to-end suite on PostgreSQL too. Each data dir keeps its database for the
# session, so a restarted server finds its jobs.
new_database: Callable[[], str] | None = None
_databases: dict[Path, str] = {}


def database_url(data_dir: Path) -> str:
    """The store URL the processes of this data dir use."""
    if new_database is None:
        return f"sqlite:///{data_dir / 'retouch.db'}"
    if data_dir not in _databases:
        _databases[data_dir] = new_database()
    return _databases[data_dir]


def forget_databases() -> None:
    _databases.clear()


def with_database(env: dict[str, str], data_dir: Path) -> dict[str, str]:
    return {**env, "RETOUCH_DATABASE_URL": database_url(data_dir)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MarkedImageClassifier:
    """A stand-in NSFW classifier for the block paths of the end-to-end tests (the real one
    cannot be shown an NSFW image in a test suite). Scores 0.99 for: a mostly magenta image
    (an input to refuse); an image of 432×640, the generated size of a 0.5K 2:3 request (every
    output withheld); the last of a batch of several 512×512 images (one output of a 0.5K
    1:1 request with num_images > 1 withheld). 0.01 otherwise."""

    name = "stand-in (tests)"

    def scores(self, images: list[Image.Image]) -> list[float]:
        def flagged(index: int, image: Image.Image) -> bool:
            red, green, blue = image.convert("RGB").resize((1, 1)).getpixel((0, 0))  # type: ignore[misc]
            magenta = red > 200 and blue > 200 and green < 80
            last_of_batch = (
                len(images) > 1
                and index == len(images) - 1
                and all(other.size == (512, 512) for other in images)
            )
            return magenta or image.size == (432, 640) or last_of_batch

        return [0.99 if flagged(i, image) else 0.01 for i, image in enumerate(images)]


def marked_image_classifier() -> MarkedImageClassifier:
    return MarkedImageClassifier()


def make_image(
    width: int, height: int, fmt: str = "PNG", color: tuple[int, int, int] = (200, 60, 30)
) -> bytes:
    image = Image.new("RGB", (width, height), color)
    # A gradient so different inputs give different references.
    for x in range(0, width, max(1, width // 16)):
        image.paste((x % 256, 120, 255 - x % 256), (x, 0, min(width, x + 4), height))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def solid_image(width: int, height: int, color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


class _ImageHandler(BaseHTTPRequestHandler):
    images: ClassVar[dict[str, tuple[bytes, str]]] = {}

    def log_message(self, *_: Any) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if parts.path == "/slow.png":
            time.sleep(float(query.get("seconds", ["2"])[0]))
            self._send(200, *self.images["/square.png"])
        elif parts.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", query["to"][0])
            self.end_headers()
        elif parts.path in self.images:
            self._send(200, *self.images[parts.path])
        else:
            self._send(404, b"not found", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass
class ImageServer:
    server: ThreadingHTTPServer

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


def start_image_server() -> ImageServer:
    _ImageHandler.images = {
        "/square.png": (make_image(256, 256), "image/png"),
        "/square-blue.png": (make_image(300, 300, color=(10, 40, 220)), "image/png"),
        "/wide.jpg": (make_image(640, 360, "JPEG"), "image/jpeg"),
        "/tall.webp": (make_image(300, 520, "WEBP"), "image/webp"),
        "/text.png": (b"this is not an image at all", "image/png"),
        "/magenta.png": (solid_image(200, 200, (255, 0, 255)), "image/png"),
        "/huge.png": (make_image(1200, 1200) + b"\0" * (3 * 1024 * 1024), "image/png"),
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ImageHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return ImageServer(server)


@dataclass(frozen=True)
class TlsFiles:
    """A certificate for 127.0.0.1 from a throwaway CA (trustme), as PEM files."""

    cert: Path
    key: Path
    ca: Path

    @classmethod
    def issue(cls, folder: Path) -> TlsFiles:
        import trustme  # only the TLS tests need it

        folder.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        issued = ca.issue_cert("127.0.0.1")
        files = cls(folder / "cert.pem", folder / "key.pem", folder / "ca.pem")
        issued.cert_chain_pems[0].write_to_path(str(files.cert))
        issued.private_key_pem.write_to_path(str(files.key))
        ca.cert_pem.write_to_path(str(files.ca))
        return files

    def trusting(self) -> ssl.SSLContext:
        """A client's context that trusts this CA only."""
        return ssl.create_default_context(cafile=str(self.ca))


@dataclass
class RetouchProcess:
    """`retouch serve` (or `retouch worker`) on a data dir, started as a real process; over
    HTTPS when given `tls`."""

    data_dir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None
    key: str | None = None
    log_path: Path | None = None
    tls: TlsFiles | None = None

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen[str]:
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-{name}.log"
        log = open(self.log_path, "a")  # noqa: SIM115 — lives as long as the process
        return subprocess.Popen(
            [sys.executable, "-m", "retouch", *args, "--data-dir", str(self.data_dir)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=with_database(self.env, self.data_dir),
        )

    def serve(self, *extra: str) -> RetouchProcess:
        tls: list[str] = []
        verify: ssl.SSLContext | bool = True
        if self.tls is not None:
            tls = ["--ssl-certfile", str(self.tls.cert), "--ssl-keyfile", str(self.tls.key)]
            verify = self.tls.trusting()
        self.process = self._spawn(["serve", "--port", str(self.port), *tls, *extra], "serve")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited: {self.log_text()}")
            try:
                httpx.get(f"{self.base}/docs", timeout=1, verify=verify)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            raise RuntimeError("serve did not start")
        return self

    def read_first_key(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        self.key = self.process.stdout.readline().strip()
        assert self.key.startswith("rtk_"), self.key
        return self.key

    def api(self) -> Api:
        """A client with the key this server printed at its first start."""
        assert self.key is not None, "read_first_key() first"
        return Api(self.base, self.key)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "retouch", *args, "--data-dir", str(self.data_dir)],
            capture_output=True,
            text=True,
            env=with_database(self.env, self.data_dir),
            check=True,
        )
        return done.stdout


def worker_process(data_dir: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "retouch", "worker", "--data-dir", str(data_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        env=with_database(env, data_dir),
    )


def server_env(**overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RETOUCH_")}
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "RETOUCH_FETCH_ALLOW": "127.0.0.1",
            "RETOUCH_LEASE_SECONDS": "2",
            "RETOUCH_FETCH_MAX_BYTES": str(2 * 1024 * 1024),
            "RETOUCH_FETCH_READ_TIMEOUT": "8",
            "RETOUCH_MAX_BODY_BYTES": str(1024 * 1024),
        }
    )
    env.update(overrides)
    return env


@contextmanager
def running_server(data_dir: Path, models_cache: Path, **env: str) -> Iterator[RetouchProcess]:
    """`retouch serve` on a new data dir sharing the built preview models, its key read."""
    seed_data_dir(data_dir, models_cache)
    server = RetouchProcess(data_dir, server_env(**env)).serve()
    server.read_first_key()
    try:
        yield server
    finally:
        server.stop()


def seed_data_dir(data_dir: Path, models_cache: Path) -> None:
    """Share one built preview model between the test servers (it is built once)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "models").symlink_to(models_cache, target_is_directory=True)


@dataclass
class Api:
    """The contract's calls with one key. `http` carries them: by default a new connection per
    request (a server may restart between two), or the in-process app's transport (see
    unit/inprocess.py)."""

    base: str
    key: str
    http: httpx.Client = field(
        default_factory=lambda: httpx.Client(
            timeout=30, limits=httpx.Limits(max_keepalive_connections=0)
        )
    )

    def with_key(self, key: str) -> Api:
        """Another key on the same server and connection."""
        return Api(self.base, key, self.http)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def submit(
        self, body: dict[str, Any], endpoint: str = "google/nano-banana-2/edit"
    ) -> httpx.Response:
        return self.http.post(
            f"{self.base}/v1/models/{endpoint}", json=body, headers=self.headers, timeout=30
        )

    def submit_ok(self, body: dict[str, Any]) -> str:
        response = self.submit(body)
        assert response.status_code == 200, response.text
        return str(response.json()["request_id"])

    def status(self, request_id: str) -> httpx.Response:
        return self.http.get(
            f"{self.base}/v1/requests/{request_id}/status", headers=self.headers, timeout=30
        )

    def result(self, request_id: str) -> httpx.Response:
        return self.http.get(
            f"{self.base}/v1/requests/{request_id}/result", headers=self.headers, timeout=30
        )

    def cancel(self, request_id: str) -> httpx.Response:
        return self.http.post(
            f"{self.base}/v1/requests/{request_id}/cancel", headers=self.headers, timeout=30
        )

    def events(self, request_id: str, **params: str) -> list[tuple[str, dict[str, Any]]]:
        """The event stream's events (name, JSON body), read to its end."""
        events: list[tuple[str, dict[str, Any]]] = []
        url = f"{self.base}/v1/requests/{request_id}/stream"
        with self.http.stream(
            "GET", url, params=params, headers=self.headers, timeout=60
        ) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            name = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    events.append((name, json.loads(line.removeprefix("data: "))))
        return events

    def wait(self, request_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status(request_id).json()
            if status["status"] in DONE_STATUSES:
                body: dict[str, Any] = self.result(request_id).json()
                return body
            time.sleep(0.05)
        raise AssertionError(f"{request_id} did not finish in {timeout} s")

    def wait_for_status(self, request_id: str, wanted: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.status(request_id).json()["status"] == wanted:
                return
            time.sleep(0.02)
        raise AssertionError(f"{request_id} never reached {wanted}")

    def download(self, url: str) -> tuple[httpx.Response, Image.Image]:
        response = self.http.get(url, timeout=30)
        assert response.status_code == 200, response.text
        return response, Image.open(io.BytesIO(response.content))


NODE_TESTS = Path(__file__).with_name("node")


def run_node_test(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`node --test tests/node/<script>` with the npm clients of tests/node/package-lock.json
    installed first (`npm ci`, once: one test process installs while the others wait on its
    lock). Skipped without Node.js and npm, and a failure under CI."""
    import fcntl
    import shutil

    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        import pytest

        if os.environ.get("CI"):
            pytest.fail("node and npm are needed for the npm clients' tests")
        pytest.skip("node and npm are not installed: the npm clients' tests need them")
    with open(NODE_TESTS / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        installed = NODE_TESTS / "node_modules" / ".package-lock.json"
        if (
            not installed.exists()
            or installed.stat().st_mtime < (NODE_TESTS / "package-lock.json").stat().st_mtime
        ):
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=NODE_TESTS,
                check=True,
                capture_output=True,
                timeout=300,
            )
    return subprocess.run(
        [node, "--test", script],
        cwd=NODE_TESTS,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
