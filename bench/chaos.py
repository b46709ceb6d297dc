"""`make chaos`: SIGKILL workers, API processes and the database under load, then check that no
job was lost, left stuck, finished twice or left files behind.

Starts, all on 127.0.0.1 and in one temp dir: a private PostgreSQL (initdb and pg_ctl, run as
the `postgres` user when this runs as root), moto's S3 server with one bucket, one small HTTP
server of its own (the input image and a webhook receiver), two `retouch serve --no-worker`
API processes and two `retouch worker` processes, each on a data dir of its own, sharing only
the database URL and the storage URL (the URL signing secret comes from the database). It
makes an API key with `retouch keys create`, uploads one image, and then submits --jobs jobs
(each with an Idempotency-Key and a webhook, retried after connection errors and 5xx answers
as the SDK retries, alternating between the two APIs; one in ten is meant to fail, one in ten
is cancelled at once) while it SIGKILLs random workers, API processes and the PostgreSQL
postmaster, restarting each after --restart-delay seconds. A process that exits without
being killed is reported, and restarted like a killed one.

Once the kills stop it waits (bounded by --settle-timeout) for every accepted job to end,
then checks:
- lost: an accepted request id the API no longer knows;
- stuck: an accepted job still queued or running at the deadline;
- doubly finished: two different outcomes delivered by webhook for one job, a delivered
  outcome other than the final result, or more than one ending in the job's log;
- stray files: an object in the bucket that is neither an upload nor an output listed by the
  result of a succeeded job (the files of failed and cancelled jobs must be gone);
- every output of a succeeded job downloads; each accepted Idempotency-Key replays its own
  request id; the key lists no job that was not accepted (no duplicate made by a retry).
It prints the counts, the failures by error code, the answers seen during the outages, the
kills by kind and the longest recovery (from a restart until the service answered again, and
after a database restart until a job moved again).

Exit status: 0 every check passed; 1 a check failed (lost, stuck, doubly finished, stray,
undownloadable, duplicate or a wrong replay; with --strict also unexpected exits and
500s); 2 the setup failed; 3 interrupted (Ctrl-C, SIGTERM) or past --max-seconds. Every
process it started is stopped and its temp dir removed in every case (--keep keeps the dir,
with each process's log). Without PostgreSQL's server binaries it says so and exits 0 (2
under CI).

    .venv/bin/python bench/chaos.py --jobs 100 --kills 40 [--db-kills 5] [--seed N] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from PIL import Image

from retouch.client.core import RetryPolicy

BIN = Path(sys.executable).parent
ENDPOINT = "google/nano-banana-2/edit"
BUCKET = "retouch-chaos"
PREFIX = "chaos"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "chaos", "AWS_SECRET_ACCESS_KEY": "chaos"}
REGION = "us-east-1"
# The SDK's own backoff, with no cap on the number of tries: a submit is given up by time
# (--submit-timeout) instead, as an outage lasts seconds here.
RETRY = RetryPolicy(max_retries=1_000_000, backoff=0.25, max_backoff=4.0)
# The SDK retries these (RETRY_STATUSES); 500 and 401 are retried too but counted, because
# the SDK would have raised them to its caller (a finding while the database is down).
SDK_RETRIED = {502, 503, 504}
ALSO_RETRIED = {500, 401}
TERMINAL = {"succeeded", "failed", "cancelled"}
# Log lines that end a job (jobs/sql_store.py and worker/runner.py write them).
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b[:(]?")
ENDINGS = ("failed: ", "its worker stopped responding; failed", "cancelled at the client's")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def png(size: int) -> bytes:
    image = Image.new("RGB", (size, size), (30, 120, 200))
    for x in range(0, size, 16):
        image.paste((x % 256, 200, 255 - x % 256), (x, 0, x + 4, size))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Interrupted(Exception):
    """Ctrl-C, SIGTERM or --max-seconds: stop, clean up, exit 3."""


# --- the processes --------------------------------------------------------------------


@dataclass
class Proc:
    """A `retouch serve` or `retouch worker` process (its own process group), restartable."""

    name: str
    kind: str  # "api" or "worker"
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    port: int | None = None
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    log_offset: int = 0
    started_at: float = 0.0
    ready_at: float | None = None
    down_since: float | None = None
    """Set while it is down (killed, or exited); the supervisor restarts it after the pause."""
    killed: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.log_offset = out.tell()
            out.write(f"=== start {self.starts + 1} at {time.strftime('%H:%M:%S')} ===\n".encode())
            self.process = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        self.starts += 1
        self.started_at = time.monotonic()
        self.ready_at = None
        self.down_since = None
        self.killed = False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.killed = True
        self.down_since = time.monotonic()

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def log_since_start(self) -> str:
        with self.log_path.open("rb") as source:
            source.seek(self.log_offset)
            return source.read().decode(errors="replace")

    def log_tail(self, lines: int = 6) -> str:
        return "\n".join(self.log_since_start().splitlines()[-lines:])


class Postgres:
    """A private PostgreSQL: initdb into a temp dir, pg_ctl to start it, SIGKILL to crash it."""

    def __init__(self, root: Path, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.dir = root / "pg"
        self.data = self.dir / "data"
        self.port = free_port()
        self.server_log = self.dir / "server.log"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/retouch"
        self.starts = 0
        self.down_since: float | None = None
        self.killed = False

    def _as_owner(self, *argv: str) -> list[str]:
        # initdb and the server refuse to run as root: run them as `postgres` then.
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return list(argv)

    def _run(self, *argv: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._as_owner(*argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,  # Ctrl-C in the terminal goes to us, not to the server
        )

    def init(self) -> None:
        self.dir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        done = self._run(
            str(self.bin_dir / "initdb"),
            *("-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"),
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}{done.stderr}")
        self.start()
        done = self._run(
            str(self.bin_dir / "psql"),
            *("-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres"),
            *("-c", "CREATE DATABASE retouch"),
        )
        if done.returncode != 0:
            raise RuntimeError(f"CREATE DATABASE failed:\n{done.stdout}{done.stderr}")

    def start(self, timeout: float = 60) -> None:
        """Start it, retrying while the backends orphaned by a SIGKILLed postmaster still
        hold the old shared memory (they exit once they notice it is gone)."""
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        deadline = time.monotonic() + timeout
        while True:
            done = self._run(
                str(self.bin_dir / "pg_ctl"),
                *("-D", str(self.data), "-o", options, "-l", str(self.server_log)),
                *("-w", "-t", "30", "start"),
            )
            if done.returncode == 0:
                self.starts += 1
                self.down_since = None
                self.killed = False
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"pg_ctl start failed:\n{done.stdout}{done.stderr}")
            time.sleep(0.3)

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def alive(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z"

    def kill(self) -> None:
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.killed = True
        self.down_since = time.monotonic()

    def stop(self) -> None:
        if not self.data.exists():
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._run(
                str(self.bin_dir / "pg_ctl"),
                *("-D", str(self.data), "-m", "immediate", "-w", "-t", "20", "stop"),
                timeout=30,
            )
        pid = self.pid()
        if pid is not None and self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def postgres_bin_dir(configured: str | None) -> Path | None:
    candidates = [configured] if configured else []
    candidates.append("/usr/lib/postgresql/15/bin")
    found = shutil.which("initdb")
    if found:
        candidates.append(str(Path(found).parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


# --- the image server and the webhook receiver -----------------------------------------


@dataclass(frozen=True)
class Delivery:
    request_id: str
    webhook_id: str
    verified: bool
    outcome: tuple[Any, ...]


def outcome_of(result: dict[str, Any]) -> tuple[Any, ...]:
    """What a finished job's result says happened: two different ones for one job mean it
    finished twice. Output URLs are compared by file name (their signatures are fresh)."""
    output = result.get("output") or {}
    files = tuple(sorted(urlsplit(url).path for url in output.get("images") or []))
    error = (result.get("error") or {}).get("code")
    return (result.get("status"), error, files, result.get("finished_at"))


def brief(outcome: tuple[Any, ...]) -> str:
    status, error, files, finished_at = outcome
    return f"{status}{f' {error}' if error else ''} ({len(files)} files, finished {finished_at})"


class LocalServer:
    """GET /input.png, /missing.png (404); POST /hook records a webhook delivery."""

    def __init__(self) -> None:
        self.image = png(256)
        self.deliveries: list[Delivery] = []
        self.lock = threading.Lock()
        self.secret: str | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/input.png":
                    self._answer(200, outer.image, "image/png")
                else:
                    self._answer(404, b"not found", "text/plain")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                outer.record(body, {k.lower(): v for k, v in self.headers.items()})
                self._answer(200, b"ok", "text/plain")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.1,), daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def record(self, body: bytes, headers: dict[str, str]) -> None:
        from standardwebhooks import Webhook
        from standardwebhooks.webhooks import WebhookVerificationError

        verified = False
        if self.secret is not None:
            try:
                Webhook(self.secret).verify(body, headers)
                verified = True
            except WebhookVerificationError:
                verified = False
        try:
            result = json.loads(body)
        except ValueError:
            result = {}
        delivery = Delivery(
            str(result.get("request_id")),
            headers.get("webhook-id", ""),
            verified,
            outcome_of(result),
        )
        with self.lock:
            self.deliveries.append(delivery)

    def by_request(self) -> dict[str, list[Delivery]]:
        found: dict[str, list[Delivery]] = {}
        with self.lock:
            for delivery in self.deliveries:
                found.setdefault(delivery.request_id, []).append(delivery)
        return found

    def __enter__(self) -> LocalServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- what happened ---------------------------------------------------------------------


@dataclass
class JobSpec:
    index: int
    kind: str  # "ok", "fail" (its input 404s) or "cancel" (cancelled right after submit)
    body: dict[str, Any]
    idempotency_key: str = field(default_factory=lambda: f"chaos-{uuid.uuid4().hex}")
    request_id: str | None = None
    submit_tries: int = 0
    replayed: bool = False
    gave_up: str | None = None
    cancel_outcome: str | None = None
    final: dict[str, Any] | None = None
    logs: list[str] = field(default_factory=list)


@dataclass
class Event:
    """One kill (or one unexpected exit) and the recovery after its restart."""

    kind: str  # "api", "worker", "db"
    name: str
    cause: str  # "killed" or "exited"
    at: float
    start_number: int = 0
    restarted_at: float | None = None
    answered_at: float | None = None
    progressed_at: float | None = None
    work_pending: bool = False
    superseded: bool = False
    progress_cut: bool = False
    detail: str = ""


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    submit_answers: Counter[str] = field(default_factory=Counter)
    probe_answers: Counter[str] = field(default_factory=Counter)
    events: list[Event] = field(default_factory=list)

    def count(self, counter: Counter[str], key: str) -> None:
        with self.lock:
            counter[key] += 1


# --- the run ---------------------------------------------------------------------------


class Chaos:
    def __init__(self, args: argparse.Namespace, root: Path, pg_bin: Path) -> None:
        self.args = args
        self.root = root
        self.rng = random.Random(args.seed)
        self.tally = Tally()
        self.postgres = Postgres(root, pg_bin)
        self.moto_port = free_port()
        self.moto: subprocess.Popen[bytes] | None = None
        self.local = LocalServer()
        self.procs: list[Proc] = []
        self.key = ""
        self.upload_id = ""
        self.upload_url = ""
        self.jobs: list[JobSpec] = []
        self.http = httpx.Client(timeout=10, limits=httpx.Limits(max_keepalive_connections=0))
        self.stop_supervising = threading.Event()
        self.proc_lock = threading.RLock()
        self.snapshot: dict[str, str] = {}
        self.supervising = False
        self.aborting = threading.Event()

    # setup ----------------------------------------------------------------------------

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RETOUCH_", "AWS_"))}
        env.update(CREDENTIALS)
        env.update(
            {
                "HF_HUB_OFFLINE": "1",
                "PYTHONUNBUFFERED": "1",
                "RETOUCH_DATABASE_URL": self.postgres.url,
                "RETOUCH_STORAGE_URL": f"s3://{BUCKET}/{PREFIX}",
                "RETOUCH_S3_ENDPOINT_URL": self.s3_endpoint,
                "RETOUCH_S3_REGION": REGION,
                # The image server and the webhook receiver are on 127.0.0.1.
                "RETOUCH_FETCH_ALLOW": "127.0.0.1",
                # Short leases: a killed worker's job runs again within seconds. The default 3
                # attempts: a job hit by 3 kills in a row ends `worker_lost` (listed among the
                # unexpected outcomes), and its files must be gone like any failed job's.
                "RETOUCH_LEASE_SECONDS": str(self.args.lease_seconds),
                "RETOUCH_MAX_ATTEMPTS": str(self.args.max_attempts),
                "RETOUCH_WEBHOOK_FIRST_RETRY_SECONDS": "0.5",
                "RETOUCH_WEBHOOK_RETRY_FACTOR": "2",
                "RETOUCH_WEBHOOK_MAX_RETRY_INTERVAL_SECONDS": "4",
                "RETOUCH_WEBHOOK_TIMEOUT_SECONDS": "5",
            }
        )
        return env

    def start_moto(self) -> None:
        with (self.root / "moto.log").open("wb") as out:
            self.moto = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.moto_port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_until("moto's S3 server", self._moto_up, 60)
        self.http.put(f"{self.s3_endpoint}/{BUCKET}").raise_for_status()

    def _moto_up(self) -> bool:
        assert self.moto is not None
        if self.moto.poll() is not None:
            raise RuntimeError(f"moto exited: {(self.root / 'moto.log').read_text()[-2000:]}")
        try:
            return self.http.get(self.s3_endpoint, timeout=2).status_code < 500
        except httpx.TransportError:
            return False

    def cli(self, *args: str) -> str:
        data_dir = self.root / "cli"
        done = subprocess.run(
            [str(BIN / "retouch"), *args, "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"retouch {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def make_procs(self) -> None:
        models = self.root / "models"  # one preview model, built once, for both workers
        models.mkdir()
        env = self.env()
        for n in (1, 2):
            data_dir = self.root / f"api{n}"
            port = free_port()
            argv = [str(BIN / "retouch"), "serve", "--no-worker", "--host", "127.0.0.1"]
            argv += ["--port", str(port), "--data-dir", str(data_dir)]
            self.procs.append(
                Proc(f"api{n}", "api", argv, env, self.root / "logs" / f"api{n}.log", port)
            )
        for n in (1, 2):
            data_dir = self.root / f"worker{n}"
            data_dir.mkdir()
            (data_dir / "models").symlink_to(models, target_is_directory=True)
            argv = [str(BIN / "retouch"), "worker", "--data-dir", str(data_dir)]
            self.procs.append(
                Proc(f"worker{n}", "worker", argv, env, self.root / "logs" / f"worker{n}.log")
            )

    @property
    def apis(self) -> list[Proc]:
        return [p for p in self.procs if p.kind == "api"]

    @property
    def workers(self) -> list[Proc]:
        return [p for p in self.procs if p.kind == "worker"]

    def setup(self) -> None:
        (self.root / "logs").mkdir()
        log(f"PostgreSQL on 127.0.0.1:{self.postgres.port} (initdb, pg_ctl)")
        self.postgres.init()
        log(f"moto's S3 server on {self.s3_endpoint}, bucket {BUCKET}")
        self.start_moto()
        self.local.__enter__()
        self.key = self.cli("keys", "create", "--name", "chaos").strip().splitlines()[-1]
        self.make_procs()
        for proc in self.procs:
            proc.start()
        log("two API processes and two workers starting")
        self.wait_until("the API processes", lambda: all(self.ready(p) for p in self.apis), 90)
        self.wait_until("the workers", lambda: all(self.ready(p) for p in self.workers), 180)
        self.local.secret = self.call("GET", "/v1/webhooks/secret").json()["secret"]
        upload = self.call(
            "POST", "/v1/files", files={"file": ("input.png", png(200), "image/png")}
        ).json()
        self.upload_url = upload["url"]
        self.upload_id = urlsplit(self.upload_url).path.split("/")[3]

    def wait_until(self, what: str, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not ready within {timeout:.0f} s")
            time.sleep(0.2)

    def ready(self, proc: Proc) -> bool:
        """An API answers an authenticated read (it reaches the database); a worker has
        loaded its engines and written its first heartbeat."""
        if proc.ready_at is not None:
            return True
        if not proc.alive():
            if not self.supervising:  # at setup: nothing restarts it
                raise RuntimeError(f"{proc.name} exited at start:\n{proc.log_tail(30)}")
            return False
        if proc.kind == "api":
            try:
                ok = self.http.get(
                    f"{proc.url}/v1/requests", params={"limit": 1}, headers=self.auth, timeout=3
                ).is_success
            except httpx.TransportError:
                ok = False
        else:
            ok = "ready for" in proc.log_since_start()
        if ok:
            proc.ready_at = time.monotonic()
        return ok

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def call(
        self, method: str, path: str, *, timeout: float = 60, first: int = 0, **kwargs: Any
    ) -> httpx.Response:
        """A request that is safe to repeat, retried on every API in turn until it answers
        anything but a 5xx, or `timeout` passes."""
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            api = self.apis[(first + attempt) % len(self.apis)]
            try:
                response = self.http.request(
                    method, api.url + path, headers=self.auth, timeout=10, **kwargs
                )
                if response.status_code < 500:
                    return response
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.TransportError as error:
                problem = f"{type(error).__name__}: {error}"
            if time.monotonic() > deadline:
                raise RuntimeError(f"{method} {path}: no answer within {timeout:.0f} s: {problem}")
            time.sleep(min(2.0, 0.2 * 2 ** min(attempt, 4)))
            attempt += 1

    # supervision: restarts, unexpected exits, recovery --------------------------------

    def supervise(self) -> None:
        """Restarts whatever is down once --restart-delay has passed (killed or exited by
        itself: an exit we did not cause is an event of its own), and times recoveries."""
        last_probe = 0.0
        while not self.stop_supervising.wait(0.1):
            now = time.monotonic()
            with self.proc_lock:
                for proc in self.procs:
                    if proc.down_since is None and proc.process is not None and not proc.alive():
                        proc.down_since = now
                        code = proc.process.returncode
                        phase = "while running" if proc.ready_at is not None else "at start"
                        event = Event(proc.kind, proc.name, "exited", now, proc.starts)
                        event.detail = f"exit status {code} {phase}: {last_error(proc)}"
                        with self.tally.lock:
                            self.tally.events.append(event)
                        log(f"{proc.name} exited by itself (status {code}, {phase})")
                    if proc.down_since is not None and now - proc.down_since >= self.pause:
                        proc.start()
                        self._restarted(proc.name, proc.starts)
                pg = self.postgres
                if pg.down_since is None and not pg.alive():
                    pg.down_since = now
                    event = Event("db", "postgres", "exited", now, pg.starts)
                    with self.tally.lock:
                        self.tally.events.append(event)
                    log("the postmaster exited by itself")
                if pg.down_since is not None and now - pg.down_since >= self.pause:
                    try:
                        pg.start()
                    except RuntimeError as error:
                        log(f"PostgreSQL did not restart yet: {error}")
                    else:
                        self._restarted("postgres", pg.starts)
            if now - last_probe >= 0.5:
                last_probe = now
                self.probe(now)

    @property
    def pause(self) -> float:
        return float(self.args.restart_delay)

    def _restarted(self, name: str, start_number: int) -> None:
        pending = any(state not in TERMINAL for state in self.snapshot.values())
        with self.tally.lock:
            for event in self.tally.events:
                if event.name == name and event.restarted_at is None:
                    event.restarted_at = time.monotonic()
                    event.start_number = start_number
                    event.work_pending = pending

    def probe(self, now: float) -> None:
        """Whether each restarted service answers again, and whether jobs move (the list of
        this key's jobs changed state) after a database restart."""
        with self.tally.lock:
            open_events = [
                e
                for e in self.tally.events
                if e.restarted_at is not None and not e.superseded and e.answered_at is None
            ]
        for event in open_events:
            if event.kind == "db":
                answered = any(self._answers(p) for p in self.apis if p.alive())
            else:
                proc = next(p for p in self.procs if p.name == event.name)
                # Ready in this start or a later one (a start can fail while the database
                # is down, and the supervisor starts it again).
                answered = proc.starts >= event.start_number and self.ready(proc)
            if answered:
                event.answered_at = time.monotonic()
        snapshot = self.list_states()
        if snapshot is None:
            return
        moved = any(
            self.snapshot.get(request_id) not in (None, state)
            for request_id, state in snapshot.items()
        )
        self.snapshot = snapshot
        if moved:
            with self.tally.lock:
                for event in self.tally.events:
                    if (
                        event.kind == "db"
                        and event.restarted_at is not None
                        and event.progressed_at is None
                        and event.work_pending
                        and not event.progress_cut
                    ):
                        event.progressed_at = time.monotonic()

    def _answers(self, api: Proc) -> bool:
        try:
            response = self.http.get(
                f"{api.url}/v1/requests", params={"limit": 1}, headers=self.auth, timeout=3
            )
        except httpx.TransportError as error:
            self.tally.count(self.tally.probe_answers, type(error).__name__)
            return False
        self.tally.count(self.tally.probe_answers, str(response.status_code))
        return response.is_success

    def list_states(self) -> dict[str, str] | None:
        """Every job of the key and its status, through any API that answers; None when
        none does."""
        states: dict[str, str] = {}
        cursor: str | None = None
        for api in self.apis:
            if not api.alive():
                continue
            try:
                while True:
                    params: dict[str, Any] = {"limit": 100}
                    if cursor:
                        params["cursor"] = cursor
                    response = self.http.get(
                        f"{api.url}/v1/requests", params=params, headers=self.auth, timeout=5
                    )
                    self.tally.count(self.tally.probe_answers, str(response.status_code))
                    if not response.is_success:
                        break
                    page = response.json()
                    states.update({r["request_id"]: r["status"] for r in page["requests"]})
                    cursor = page.get("next_cursor")
                    if not cursor:
                        return states
            except httpx.TransportError as error:
                self.tally.count(self.tally.probe_answers, type(error).__name__)
            states, cursor = {}, None
        return None

    # the load ---------------------------------------------------------------------------

    def plan_jobs(self) -> None:
        for index in range(self.args.jobs):
            kind = "ok"
            if index % 10 == 9:
                kind = "fail"
            elif index % 10 == 4:
                kind = "cancel"
            if kind == "fail":
                image = f"{self.local.base}/missing.png"
            else:
                image = self.upload_url if index % 2 == 0 else f"{self.local.base}/input.png"
            body = {
                "prompt": f"chaos job {index}",
                "image_urls": [image],
                "resolution": "0.5K",
                "aspect_ratio": "1:1",
                "seed": index,
                "num_images": 2 if index % 7 == 3 else 1,
            }
            self.jobs.append(JobSpec(index, kind, body))

    def submit(self, job: JobSpec) -> None:
        """One submit, as the SDK makes it with an idempotency key: retried with backoff
        after connection errors and 502/503/504 (Retry-After honoured); each try goes to the
        other API."""
        deadline = time.monotonic() + self.args.submit_timeout
        headers = {**self.auth, "Idempotency-Key": job.idempotency_key}
        attempt = 0
        while True:
            api = self.apis[(job.index + attempt) % len(self.apis)]
            job.submit_tries = attempt + 1
            retry_after: float | None = None
            try:
                response = self.http.post(
                    f"{api.url}/v1/models/{ENDPOINT}",
                    params={"webhook": f"{self.local.base}/hook"},
                    json=job.body,
                    headers=headers,
                    timeout=10,
                )
            except httpx.TransportError as error:
                self.tally.count(self.tally.submit_answers, type(error).__name__)
            else:
                self.tally.count(self.tally.submit_answers, str(response.status_code))
                if response.status_code == 200:
                    job.request_id = str(response.json()["request_id"])
                    job.replayed = response.headers.get("idempotent-replayed") == "true"
                    break
                if response.status_code not in SDK_RETRIED | ALSO_RETRIED:
                    job.gave_up = f"HTTP {response.status_code}: {response.text[:300]}"
                    return
                with contextlib.suppress(ValueError):
                    retry_after = float(response.headers.get("retry-after", ""))
            delay = RETRY.delay(min(attempt, 8), retry_after) or 1.0
            if time.monotonic() + delay > deadline:
                job.gave_up = f"no 200 within {self.args.submit_timeout} s"
                return
            if self.aborting.wait(delay):
                job.gave_up = "interrupted"
                return
            attempt += 1
        if job.kind == "cancel":
            time.sleep(self.rng.uniform(0, 1.5))  # queued by then, or running already
            try:
                answer = self.call(
                    "POST", f"/v1/requests/{job.request_id}/cancel", first=job.index, timeout=60
                )
                job.cancel_outcome = str(answer.json().get("outcome", answer.status_code))
            except RuntimeError as error:
                job.cancel_outcome = f"no answer: {error}"

    def load(self, window: float) -> None:
        """Every job submitted by four clients, spread over `window` seconds."""
        started = time.monotonic()
        spacing = window / max(1, len(self.jobs))

        def paced(job: JobSpec) -> None:
            if not self.aborting.wait(max(0.0, started + job.index * spacing - time.monotonic())):
                self.submit(job)

        pool = ThreadPoolExecutor(4, thread_name_prefix="submit")
        try:
            list(pool.map(paced, self.jobs))
        finally:
            # On Ctrl-C the submits still sleeping between tries give up at once.
            self.aborting.set()
            pool.shutdown(wait=False, cancel_futures=True)

    # the kills --------------------------------------------------------------------------

    def kill_plan(self) -> list[str]:
        kinds = ["db"] * min(self.args.db_kills, self.args.kills)
        others = self.args.kills - len(kinds)
        kinds += self.rng.choices(["worker", "api"], weights=[3, 2], k=others)
        self.rng.shuffle(kinds)
        return kinds

    def kill_one(self, kind: str) -> None:
        with self.proc_lock:
            if kind == "db":
                if not self.postgres.alive():
                    return
                self.postgres.kill()
                name = "postgres"
                start_number = self.postgres.starts
            else:
                up = [p for p in self.procs if p.kind == kind and p.alive()]
                ready = [p for p in up if p.ready_at is not None]
                if not up:
                    return
                victim = self.rng.choice(ready or up)
                victim.kill()
                name, start_number = victim.name, victim.starts
            event = Event(kind, name, "killed", time.monotonic(), start_number)
            with self.tally.lock:
                for earlier in self.tally.events:
                    if earlier.name == name and earlier.answered_at is None:
                        earlier.superseded = True  # killed again before it recovered
                    if earlier.name == name:
                        earlier.progress_cut = True  # a job moving later is not its recovery
                self.tally.events.append(event)
        log(f"SIGKILL {name}")

    def chaos(self) -> None:
        for kind in self.kill_plan():
            time.sleep(self.args.kill_interval * self.rng.uniform(0.5, 1.5))
            # Each kill hits a service that is up and has recovered from the last one (a
            # worker mid-job rather than one still loading its engines; a database outage
            # of its own rather than one long outage made of several), or after 30 s
            # whatever is up.
            with contextlib.suppress(RuntimeError):
                self.wait_until(f"a {kind} to kill", functools.partial(self.recovered, kind), 30)
            self.kill_one(kind)

    def recovered(self, kind: str) -> bool:
        if kind != "db":
            with self.proc_lock:
                return any(p.ready_at is not None for p in self.procs if p.kind == kind)
        with self.tally.lock:
            return self.postgres.alive() and all(
                e.answered_at is not None or e.superseded
                for e in self.tally.events
                if e.kind == "db"
            )

    # after the kills --------------------------------------------------------------------

    def everything_up(self) -> bool:
        return self.postgres.alive() and all(self.ready(p) for p in self.procs)

    def settle(self) -> None:
        accepted = [job for job in self.jobs if job.request_id]
        deadline = time.monotonic() + self.args.settle_timeout
        while time.monotonic() < deadline:
            states = self.snapshot
            if all(states.get(str(j.request_id)) in TERMINAL for j in accepted):
                break
            time.sleep(0.5)
        # Deliveries of the jobs that ended, then the workers idle (a worker that lost its
        # claim deletes its files when it finds out), before anything is checked.
        finished = {str(j.request_id) for j in accepted}
        finished &= {rid for rid, s in self.snapshot.items() if s in TERMINAL}
        deadline = time.monotonic() + self.args.webhook_timeout
        while time.monotonic() < deadline and not finished <= set(self.local.by_request()):
            time.sleep(0.5)
        # A heartbeat's interval (5 s) first, so each live worker has reported since.
        time.sleep(6)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self.workers_idle():
            time.sleep(0.5)

    def workers_idle(self) -> bool:
        """No live worker of ours reports a current job (heartbeats come every 5 s)."""
        try:
            rows = self.call("GET", "/v1/workers", timeout=10).json()["workers"]
        except (RuntimeError, ValueError, KeyError):
            return False
        pids = {str(p.process.pid) for p in self.workers if p.process and p.alive()}
        return not any(
            row.get("current_job") for row in rows if str(row["id"]).rsplit(":", 1)[-1] in pids
        )

    def collect(self) -> None:
        for job in self.jobs:
            if not job.request_id:
                continue
            result = self.call("GET", f"/v1/requests/{job.request_id}/result", first=job.index)
            job.final = result.json() if result.status_code == 200 else {"http": result.status_code}
            status = self.call(
                "GET", f"/v1/requests/{job.request_id}/status", params={"logs": 1}, first=job.index
            )
            if status.status_code == 200:
                job.logs = [line["message"] for line in status.json().get("logs") or []]

    def bucket_objects(self) -> list[str]:
        import obstore
        from obstore.store import S3Store

        store = S3Store(
            BUCKET,
            config={  # type: ignore[arg-type]  # S3Config is a TypedDict of these keys
                "endpoint": self.s3_endpoint,
                "region": REGION,
                "access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
                "secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            },
            client_options={"allow_http": True},
        )
        return [str(meta["path"]) for batch in obstore.list(store) for meta in batch]

    def check(self) -> int:
        """Print the report; the exit status."""
        accepted = [job for job in self.jobs if job.request_id]
        by_id = {str(job.request_id): job for job in accepted}
        states: Counter[str] = Counter()
        failed_codes: Counter[str] = Counter()
        unexpected: list[str] = []
        lost: list[str] = []
        stuck: list[str] = []
        double: list[str] = []
        undownloadable: list[str] = []
        outputs: dict[str, set[str]] = {}
        deliveries = self.local.by_request()
        no_webhook: list[str] = []
        bad_signatures = 0
        repeat_deliveries = 0
        for job in accepted:
            rid = str(job.request_id)
            final = job.final or {}
            status = str(final.get("status", f"HTTP {final.get('http')}"))
            states[status] += 1
            if final.get("http") == 404:
                lost.append(rid)
                continue
            if status not in TERMINAL:
                stuck.append(f"{rid} ({status}, attempts {final.get('attempts')})")
                continue
            if status == "failed":
                failed_codes[str((final.get("error") or {}).get("code"))] += 1
            expected = {"ok": "succeeded", "fail": "failed"}.get(job.kind)
            if job.kind == "cancel":
                expected = "cancelled" if job.cancel_outcome == "cancelled" else "succeeded"
            if status != expected:
                error = final.get("error") or {}
                unexpected.append(
                    f"job {job.index} ({job.kind}) {rid}: {status}, expected {expected}: "
                    f"{error.get('code')} {str(error.get('message'))[:160]}"
                )
            # Finished once: one outcome delivered, the one the result shows; one ending logged.
            delivered = deliveries.get(rid, [])
            bad_signatures += sum(not d.verified for d in delivered)
            outcomes = {d.outcome for d in delivered}
            repeat_deliveries += max(0, len(delivered) - 1)
            endings = [line for line in job.logs if line.startswith(ENDINGS)]
            if not delivered:
                no_webhook.append(rid)
            reasons = []
            if len(outcomes) > 1:
                shown = ", ".join(sorted(map(brief, outcomes)))
                reasons.append(f"{len(outcomes)} different outcomes delivered: {shown}")
            elif outcomes and outcomes != {outcome_of(final)}:
                shown = ", ".join(sorted(map(brief, outcomes)))
                reasons.append(f"delivered {shown}, but the result is {brief(outcome_of(final))}")
            if len(endings) > 1 or (status == "succeeded" and endings):
                reasons.append(f"log endings {endings} for a {status} job")
            if reasons:
                double.append(f"{rid}: " + "; ".join(reasons))
            if status == "succeeded":
                urls = (final.get("output") or {}).get("images") or []
                outputs[rid] = {urlsplit(url).path.rsplit("/", 1)[1] for url in urls}
                for url in urls:
                    if not self.downloads(url):
                        undownloadable.append(url)
        stray: list[str] = []
        missing: list[str] = []
        found: set[tuple[str, str]] = set()
        for path in self.bucket_objects():
            parts = path.split("/")
            if len(parts) != 3 or parts[0] != PREFIX:
                stray.append(f"{path} (outside {PREFIX}/<request>/<file>)")
                continue
            rid, name = parts[1], parts[2]
            found.add((rid, name))
            if rid == self.upload_id and name.startswith("upload."):
                continue
            if name in outputs.get(rid, set()):
                continue
            owner = by_id.get(rid)
            what = "unknown request"
            if owner is not None and owner.final is not None:
                error = (owner.final.get("error") or {}).get("code")
                what = f"{owner.final.get('status')}{f' {error}' if error else ''} job"
                what += f", attempts {owner.final.get('attempts')}"
            stray.append(f"{path} ({what})")
        for rid, names in outputs.items():
            missing += [f"{rid}/{n}" for n in sorted(names) if (rid, n) not in found]
        orphans = self.orphan_jobs(set(by_id))
        replays = self.replay_mismatches(accepted)
        gave_up = [f"job {j.index}: {j.gave_up}" for j in self.jobs if j.gave_up]
        return self.report(
            accepted=accepted,
            states=states,
            failed_codes=failed_codes,
            unexpected=unexpected,
            lost=lost,
            stuck=stuck,
            double=double,
            stray=stray,
            missing=missing,
            undownloadable=undownloadable,
            orphans=orphans,
            replays=replays,
            gave_up=gave_up,
            no_webhook=no_webhook,
            bad_signatures=bad_signatures,
            repeat_deliveries=repeat_deliveries,
        )

    def downloads(self, url: str) -> bool:
        for _ in range(3):
            try:
                response = self.http.get(url, timeout=10)
                if response.status_code == 200:
                    Image.open(io.BytesIO(response.content)).verify()
                    return True
            except (httpx.TransportError, OSError):
                pass
            time.sleep(0.5)
        return False

    def orphan_jobs(self, accepted: set[str]) -> list[str]:
        listed = self.list_states()
        if listed is None:
            return ["(the list of requests could not be read)"]
        return sorted(set(listed) - accepted)

    def replay_mismatches(self, accepted: list[JobSpec]) -> list[str]:
        """Each accepted key, sent again through the other API, must answer its own id."""
        wrong = []
        for job in accepted:
            api = self.apis[(job.index + 1) % len(self.apis)]
            try:
                response = self.http.post(
                    f"{api.url}/v1/models/{ENDPOINT}",
                    params={"webhook": f"{self.local.base}/hook"},
                    json=job.body,
                    headers={**self.auth, "Idempotency-Key": job.idempotency_key},
                    timeout=10,
                )
            except httpx.TransportError as error:
                wrong.append(f"job {job.index}: {type(error).__name__}")
                continue
            answered = response.json().get("request_id") if response.status_code == 200 else None
            if answered != job.request_id:
                wrong.append(f"job {job.index}: HTTP {response.status_code} {response.text[:200]}")
        return wrong

    def report(self, **found: Any) -> int:
        accepted: list[JobSpec] = found["accepted"]
        events = self.tally.events
        kills = Counter(e.kind for e in events if e.cause == "killed")
        exits = [e for e in events if e.cause == "exited"]
        out = []
        out.append("")
        out.append("=== chaos: results ===")
        out.append(
            f"jobs: {len(self.jobs)} planned, {len(accepted)} accepted "
            f"({sum(j.replayed for j in accepted)} answered as a replay of a retried submit), "
            f"{len(found['gave_up'])} submits given up"
        )
        out.append("final states: " + ", ".join(f"{s} {n}" for s, n in found["states"].items()))
        out.append(f"succeeded: {found['states'].get('succeeded', 0)}")
        codes = ", ".join(f"{c} {n}" for c, n in found["failed_codes"].most_common()) or "-"
        out.append(f"failed: {sum(found['failed_codes'].values())} (by error code: {codes})")
        out.append(f"cancelled: {found['states'].get('cancelled', 0)}")
        checks = [
            ("lost", found["lost"]),
            ("stuck", found["stuck"]),
            ("doubly finished", found["double"]),
            ("stray files", found["stray"]),
            ("outputs missing from the bucket", found["missing"]),
            ("outputs not downloadable", found["undownloadable"]),
            ("jobs not accepted yet listed (duplicates)", found["orphans"]),
            ("idempotency replays answering another id", found["replays"]),
        ]
        for name, items in checks:
            out.append(f"{name}: {len(items)}")
            out += [f"    {item}" for item in items[:20]]
        out.append(f"unexpected outcomes: {len(found['unexpected'])}")
        out += [f"    {item}" for item in found["unexpected"][:20]]
        out.append(f"submits given up: {len(found['gave_up'])}")
        out += [f"    {item}" for item in found["gave_up"][:20]]
        out.append(
            f"webhooks: {sum(len(v) for v in self.local.by_request().values())} deliveries, "
            f"{len(found['no_webhook'])} finished jobs without one, "
            f"{found['repeat_deliveries']} repeats (at least once), "
            f"{found['bad_signatures']} with a bad signature"
        )
        out += [f"    no webhook: {rid}" for rid in found["no_webhook"][:20]]
        tries = Counter(j.submit_tries for j in accepted)
        out.append(
            "submit tries per accepted job: "
            + ", ".join(f"{t}×{n}" for t, n in sorted(tries.items()))
        )
        out.append("submit answers: " + format_counter(self.tally.submit_answers))
        out.append("probe answers (GET /v1/requests): " + format_counter(self.tally.probe_answers))
        total_kills = sum(kills.values())
        out.append(
            f"kills: {total_kills} ("
            + ", ".join(f"{k} {n}" for k, n in sorted(kills.items()))
            + ")"
        )
        out.append(f"unexpected exits: {len(exits)}")
        out += [f"    {event.name}: {event.detail}" for event in exits]
        out += self.recovery_lines(events)
        tracebacks = self.tracebacks()
        out.append("exceptions in the process logs: " + (format_counter(tracebacks) or "none"))
        print("\n".join(out), flush=True)
        failures = sum(len(items) for _, items in checks)
        if self.args.strict:
            failures += len(exits) + self.tally.submit_answers.get("500", 0)
        return 1 if failures else 0

    def recovery_lines(self, events: list[Event]) -> list[str]:
        lines = [
            "longest recovery (from the restart, which comes "
            f"{self.pause:g} s after the kill; down: from the kill):"
        ]
        for kind, what in (("db", "the API answered"), ("api", "answered"), ("worker", "ready")):
            mine = [e for e in events if e.kind == kind]
            # (seconds from the restart, seconds from the kill) of each recovery
            timed = [
                (e.answered_at - e.restarted_at, e.answered_at - e.at)
                for e in mine
                if e.answered_at is not None and e.restarted_at is not None
            ]
            unrecovered = [e for e in mine if e.answered_at is None and not e.superseded]
            superseded = sum(e.superseded for e in mine)
            if not mine:
                continue
            text = f"    {kind}:"
            if timed:
                after = [pair[0] for pair in timed]
                down = [pair[1] for pair in timed]
                text += (
                    f" {what} {max(after):.1f} s after the restart at most "
                    f"({sum(after) / len(after):.1f} s on average, {len(timed)} restarts); "
                    f"down {max(down):.1f} s at most"
                )
            if unrecovered:
                text += f"; {len(unrecovered)} never recovered"
            if superseded:
                text += f"; {superseded} killed again before they recovered"
            lines.append(text)
            moved = [
                e.progressed_at - e.restarted_at
                for e in mine
                if e.progressed_at is not None and e.restarted_at is not None
            ]
            if moved:
                lines.append(
                    f"    {kind}: a job moved again {max(moved):.1f} s after the restart at most "
                    f"({sum(moved) / len(moved):.1f} s on average, {len(moved)} restarts with "
                    "jobs waiting)"
                )
        return lines

    def tracebacks(self) -> Counter[str]:
        """The last line of every traceback in the process logs (the exception), by kind."""
        found: Counter[str] = Counter()
        for proc in self.procs:
            in_traceback = False
            for line in proc.log_path.read_text(errors="replace").splitlines():
                if line.startswith("Traceback (most recent call last)"):
                    in_traceback = True
                elif in_traceback and line and not line.startswith((" ", "\t", "During", "The ")):
                    in_traceback = False
                    found[f"{proc.kind}: {line.split(':', 1)[0].strip()}"] += 1
        return found

    # the whole run ----------------------------------------------------------------------

    def run(self) -> int:
        self.setup()
        self.plan_jobs()
        self.supervising = True
        supervisor = threading.Thread(target=self.supervise, name="supervise", daemon=True)
        supervisor.start()
        window = self.args.kills * self.args.kill_interval
        log(
            f"{self.args.jobs} jobs over ~{window * 0.8:.0f} s, {self.args.kills} kills "
            f"(at least {min(self.args.db_kills, self.args.kills)} of the database) "
            f"~{self.args.kill_interval:g} s apart"
        )
        killer = threading.Thread(target=self.chaos, name="chaos", daemon=True)
        killer.start()
        self.load(window * 0.8)
        while killer.is_alive():
            killer.join(0.5)
        log("kills over; waiting for everything to be up again")
        self.wait_until("every process", self.everything_up, 120)
        log("waiting for every accepted job to end")
        self.settle()
        self.collect()
        self.stop_supervising.set()
        supervisor.join()
        return self.check()

    def close(self) -> None:
        self.stop_supervising.set()
        for proc in self.procs:
            proc.stop()
        self.postgres.stop()
        if self.moto is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.moto.pid, signal.SIGKILL)
            self.moto.wait()
        if self.local.thread.is_alive():
            self.local.__exit__()
        self.http.close()


def last_error(proc: Proc) -> str:
    """The exception a process died of, from its log: the last line that names an exception,
    with its continuation lines (rich wraps long messages)."""
    found: list[str] = []
    capturing = False
    for raw in proc.log_since_start().splitlines():
        line = raw.strip()
        if EXCEPTION_LINE.match(line):
            found, capturing = [line], True
        elif capturing and line and not line.startswith(("│", "╭", "╰", "(Background", "The ")):
            found.append(line)
        else:
            capturing = False
    return " ".join(found)[:300] or "(no exception in its log)"


def format_counter(counter: Counter[str]) -> str:
    return ", ".join(f"{key} {n}" for key, n in sorted(counter.items()))


@contextlib.contextmanager
def interruptible(max_seconds: float) -> Iterator[None]:
    """SIGTERM and --max-seconds raise Interrupted in the main thread (Ctrl-C raises
    KeyboardInterrupt), so the cleanup runs."""

    def interrupt(signum: int, _frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, interrupt)
    previous_alarm = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, max_seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGALRM, previous_alarm)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=100, help="jobs to submit")
    parser.add_argument("--kills", type=int, default=40, help="SIGKILLs in all")
    parser.add_argument("--db-kills", type=int, default=5, help="of which the postmaster")
    parser.add_argument("--kill-interval", type=float, default=3.0, help="mean seconds apart")
    parser.add_argument("--restart-delay", type=float, default=1.0, help="seconds down")
    parser.add_argument("--lease-seconds", type=float, default=4.0, help="RETOUCH_LEASE_SECONDS")
    parser.add_argument("--max-attempts", type=int, default=3, help="RETOUCH_MAX_ATTEMPTS [3]")
    parser.add_argument("--submit-timeout", type=float, default=120.0, help="per submit")
    parser.add_argument("--settle-timeout", type=float, default=180.0, help="after the kills")
    parser.add_argument("--webhook-timeout", type=float, default=60.0, help="then webhooks")
    parser.add_argument("--max-seconds", type=float, default=1200.0, help="the whole run")
    parser.add_argument("--seed", type=int, default=None, help="of the kill schedule")
    parser.add_argument("--postgres-bin", default=os.environ.get("PG_BIN"), help="initdb's dir")
    parser.add_argument("--strict", action="store_true", help="exits and 500s fail it too")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and its logs")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1_000_000)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pg_bin = postgres_bin_dir(args.postgres_bin)
    if pg_bin is None:
        message = "no PostgreSQL server binaries (initdb): set --postgres-bin or PG_BIN"
        log(f"skipped: {message}")
        return 2 if os.environ.get("CI") else 0
    root = Path(tempfile.mkdtemp(prefix="retouch-chaos-"))
    if os.geteuid() == 0:
        root.chmod(0o711)  # the postgres user must reach its own dir inside
    log(f"seed {args.seed}; temp dir {root}")
    chaos = Chaos(args, root, pg_bin)
    status = 3
    try:
        with interruptible(args.max_seconds):
            try:
                status = chaos.run()
            except RuntimeError as error:
                log(f"setup or run failed: {error}")
                status = 2
            finally:
                chaos.close()
    except (Interrupted, KeyboardInterrupt) as why:
        log(f"interrupted ({str(why) or 'Ctrl-C'}); stopped every process it started")
        with contextlib.suppress(Exception):
            chaos.close()
        status = 3
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
