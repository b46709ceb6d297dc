"""Benchmark of the service around the model, on the preview model, on this machine.

Starts real `retouch serve` processes on 127.0.0.1 with a local image server, on SQLite and,
given `--database-url` (a PostgreSQL server), on PostgreSQL too, in one run, and prints one
table of every figure for each backend beside its target:

- submit latency p50/p99 from one client (plain and with an Idempotency-Key), from 32
  concurrent submitters, and from one client behind a queue of N jobs;
- status polls per second and p50 at the head and at the tail of N queued jobs (no worker
  runs, so they stay queued);
- with 500 event streams open on running jobs and 10-20 job changes a second, the status-poll
  p50 against the same server without the streams, and the idle API process's CPU;
- status polls per second of Retouch against a minimal FastAPI app doing the same work
  (bench/reference_app.py), and of `retouch serve --api-processes 2` against one process;
- claims + completions per second of a trivial job (the store's claim and complete, from
  threads of this process);
- with the worker: idle pick-up latency, per-job overhead at 1K (end to end minus engine and
  encoding), and how long after a job ends a client learns it: over the event stream, from
  `Prefer: wait`, and by polling as Retry-After says.

HTTP load comes from `wrk` when installed (`apt-get install -y wrk`), else from a Python
generator, which costs the server's cores more (its figures are floors). PostgreSQL: the bench
creates its own databases (`retouch_bench_<random>`, over a connection to the URL's database)
and drops exactly those at the end.

    .venv/bin/python bench/api_overhead.py [--database-url postgresql+psycopg://USER@HOST/DB]
        [--queued 50000] [--streams 500] [--poll-seconds 5] [--repeats 1] [--skip worker,...]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from sqlalchemy import Engine, func, make_url, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import e2e_support
from e2e_support import (
    Api,
    RetouchProcess,
    free_port,
    seed_data_dir,
    server_env,
    start_image_server,
)
from http_load import HttpLoad, Load, LoadError, OpenStreams, median_load, percentile
from retouch.contract.states import JobState
from retouch.jobs.database import writer
from retouch.jobs.models import Claim
from retouch.jobs.open_store import open_store
from retouch.jobs.schema import jobs
from retouch.jobs.sql_store import SqlJobStore

ENDPOINT = "google/nano-banana-2/edit"
PHASES = ("submit", "streams", "queue", "reference", "processes", "claims", "worker")
BENCH = Path(__file__).resolve().parent
Figures = dict[str, float]


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# --- the options -------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    database_url: str | None
    json: Path | None
    submits: int
    submitters: int
    submit_seconds: float
    submit_pause_ms: int
    deep_submits: int
    queued: int
    streams: int
    changes_per_second: float
    cpu_seconds: float
    poll_seconds: float
    connections: int
    repeats: int
    warmup_seconds: float
    claim_threads: int
    claim_seconds: float
    jobs: int
    skip: frozenset[str]
    server_env: dict[str, str]

    def runs(self, phase: str) -> bool:
        return phase not in self.skip


def parse_options() -> tuple[Options, HttpLoad]:
    parser = argparse.ArgumentParser(
        description="The service's own costs, on SQLite and (with --database-url) PostgreSQL."
    )
    add = parser.add_argument
    add(
        "--database-url",
        help="a PostgreSQL server, postgresql+psycopg://USER[:PASSWORD]@HOST:PORT/DATABASE: "
        "the bench runs on it too, in databases it creates over this connection and drops",
    )
    add("--submits", type=int, default=300, help="sequential submits, plain and keyed [300]")
    add("--submitters", type=int, default=32, help="concurrent submitters [32]")
    add("--submit-seconds", type=float, default=5.0, help="concurrent submits' duration [5]")
    add(
        "--submit-pause-ms",
        type=int,
        default=100,
        help="paced submitters: each waits a random pause of this mean (exponential) after an "
        "answer before its next submit, so 32 of them offer at most 320/s, below saturation "
        "[100]",
    )
    add("--deep-submits", type=int, default=100, help="submits behind the N queued jobs [100]")
    add("--queued", type=int, default=50_000, help="N: jobs queued for the tail poll [50000]")
    add("--streams", type=int, default=500, help="open event streams [500]")
    add("--changes-per-second", type=float, default=15.0, help="job changes beside them [15]")
    add("--cpu-seconds", type=float, default=5.0, help="the CPU measurement's window [5]")
    add("--poll-seconds", type=float, default=5.0, help="each poll load's duration [5]")
    add("--connections", type=int, default=32, help="poll load's keep-alive connections [32]")
    add("--threads", type=int, default=2, help="wrk threads [2]")
    add("--repeats", type=int, default=1, help="runs of each poll load; medians shown [1]")
    add("--warmup-seconds", type=float, default=1.0, help="unmeasured load first [1]")
    add("--claim-threads", type=int, default=8, help="threads claiming trivial jobs [8]")
    add("--claim-seconds", type=float, default=5.0, help="their duration [5]")
    add("--jobs", type=int, default=15, help="preview jobs for pick-up and overhead [15]")
    add(
        "--load-generator",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="auto: wrk when installed, else the Python one [auto]",
    )
    add("--json", type=Path, help="also write every figure, per backend, to this JSON file")
    add("--skip", default="", help=f"comma-separated phases to leave out: {','.join(PHASES)}")
    add(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a variable for the servers, e.g. RETOUCH_ACCESS_LOG=true to measure its cost "
        "(repeatable)",
    )
    args = parser.parse_args()
    skip = frozenset(name for name in args.skip.split(",") if name)
    if unknown := skip - set(PHASES):
        parser.error(f"--skip: unknown phases {sorted(unknown)}; known: {','.join(PHASES)}")
    if malformed := [given for given in args.server_env if "=" not in given]:
        parser.error(f"--server-env: expected NAME=VALUE, not {malformed}")
    if args.database_url and make_url(args.database_url).get_backend_name() != "postgresql":
        parser.error("--database-url takes a PostgreSQL server (SQLite always runs)")
    options = Options(
        database_url=args.database_url,
        json=args.json,
        submits=max(1, args.submits),
        submitters=args.submitters,
        submit_seconds=args.submit_seconds,
        submit_pause_ms=max(0, args.submit_pause_ms),
        deep_submits=max(1, args.deep_submits),
        queued=max(1, args.queued),
        streams=max(1, args.streams),
        changes_per_second=args.changes_per_second,
        cpu_seconds=args.cpu_seconds,
        poll_seconds=args.poll_seconds,
        connections=args.connections,
        repeats=max(1, args.repeats),
        warmup_seconds=args.warmup_seconds,
        claim_threads=max(1, args.claim_threads),
        claim_seconds=args.claim_seconds,
        jobs=max(1, args.jobs),
        skip=skip,
        server_env={
            name: value for name, _, value in (given.partition("=") for given in args.server_env)
        },
    )
    try:
        load = HttpLoad.choose(args.load_generator, args.threads)
    except LoadError as error:
        parser.error(str(error))
    return options, load


# --- databases and processes -------------------------------------------------------------


class BenchDatabases:
    """Databases `retouch_bench_<random>` on the given PostgreSQL server, created over a
    connection to the URL's database; `drop_created` drops exactly these, nothing else."""

    def __init__(self, url: str) -> None:
        self.admin = make_url(url).set(drivername="postgresql")
        self.created: list[str] = []

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        conninfo = self.admin.render_as_string(hide_password=False)
        return psycopg.connect(conninfo, autocommit=True, connect_timeout=10)

    def create(self) -> str:
        name = f"retouch_bench_{secrets.token_hex(6)}"
        with self._connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        url = self.admin.set(drivername="postgresql+psycopg", database=name)
        return url.render_as_string(hide_password=False)

    def drop_created(self) -> None:
        if not self.created:
            return
        with self._connect() as conn:
            for name in self.created:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        self.created.clear()


@dataclass
class Backend:
    """One store backend: its data dirs and their database URLs (e2e_support's, so that the
    processes it starts use them)."""

    name: str
    root: Path
    models: Path
    databases: BenchDatabases | None
    env: dict[str, str]
    stack: ExitStack

    def data_dir(self, label: str) -> Path:
        e2e_support.new_database = self.databases.create if self.databases else None
        data_dir = self.root / f"{self.name}-{label}"
        seed_data_dir(data_dir, self.models)
        return data_dir

    def database_url(self, data_dir: Path) -> str:
        return e2e_support.database_url(data_dir)

    def serve(self, data_dir: Path, *extra: str) -> RetouchProcess:
        process = RetouchProcess(data_dir, self.env)
        self.stack.callback(process.stop)
        return process.serve(*extra)

    def store(self, data_dir: Path) -> SqlJobStore:
        store = open_store(self.database_url(data_dir), max_attempts=3, webhook_retry_seconds=60)
        self.stack.callback(store.close)
        return store


def serve_flags() -> str:
    done = subprocess.run(
        [sys.executable, "-m", "retouch", "serve", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "300", "TERM": "dumb", "NO_COLOR": "1"},
        timeout=60,
    )
    return done.stdout + done.stderr


@contextmanager
def reference_app(database_url: str) -> Iterator[str]:
    """bench/reference_app.py on a free port, on the same database; its base URL."""
    port = free_port()
    command = [sys.executable, str(BENCH / "reference_app.py"), "--port", str(port)]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [*command, "--database-url", database_url], stdout=log, stderr=log
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"reference_app exited: {log.read().decode()}")
                try:
                    httpx.get(f"{base}/", timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("reference_app did not start") from None
                    time.sleep(0.05)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_percent(pid: int, seconds: float) -> float:
    """The process's CPU over a window, in percent of one core."""
    before, start = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - start) * 100


# --- direct store work -------------------------------------------------------------------


def insert_queued(
    engine: Engine, count: int, *, key_id: str, input_text: str, base_url: str
) -> list[str]:
    """`count` queued jobs in a few bulk inserts, as submits would have made them (no worker
    runs, so they stay queued). Their ids, oldest first."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    now = time.time()
    with writer(engine).begin() as conn:
        # One key's jobs take consecutive rounds of the fair queue (SqlJobStore.submit).
        first_round = conn.execute(
            select(func.coalesce(func.max(jobs.c.queue_round) + 1, 0)).where(
                jobs.c.key_id == key_id, jobs.c.state == JobState.QUEUED
            )
        ).scalar_one()
        for start in range(0, count, 5000):
            conn.execute(
                jobs.insert(),
                [
                    {
                        "id": job_id,
                        "key_id": key_id,
                        "endpoint": ENDPOINT,
                        "input": input_text,
                        "state": JobState.QUEUED.value,
                        "attempts": 0,
                        "created_at": now,
                        "base_url": base_url,
                        "queue_round": first_round + start + offset,
                    }
                    for offset, job_id in enumerate(ids[start : start + 5000])
                ],
            )
    return ids


def queued_count(engine: Engine) -> int:
    with engine.connect() as conn:
        count = select(func.count()).select_from(jobs).where(jobs.c.state == JobState.QUEUED)
        return int(conn.execute(count).scalar_one())


def oldest_queued(engine: Engine) -> str:
    with engine.connect() as conn:
        first = (
            select(jobs.c.id)
            .where(jobs.c.state == JobState.QUEUED)
            .order_by(jobs.c.queue_round, jobs.c.seq)
        )
        return str(conn.execute(first.limit(1)).scalar_one())


class Changer:
    """Job changes at a steady rate from a thread: report_progress on running jobs in turn,
    each a committed write that wakes the API's waiters (as a worker's progress does)."""

    def __init__(self, store: SqlJobStore, claims: list[Claim], per_second: float) -> None:
        self.store, self.claims, self.per_second = store, claims, per_second
        self.changes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-changes", daemon=True)
        self._started = 0.0

    def __enter__(self) -> Changer:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    @property
    def rate(self) -> float:
        return self.changes / max(1e-9, time.monotonic() - self._started)

    def _run(self) -> None:
        if self.per_second <= 0:
            return
        due = time.monotonic()
        count = len(self.claims)
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            claim = self.claims[self.changes % count]
            step = (self.changes // count) % 999 + 1  # differs from this job's last report
            self.store.report_progress(claim, step=step, total=1000)
            self.changes += 1
            due += 1 / self.per_second


def claims_per_second(store: SqlJobStore, threads: int, seconds: float) -> tuple[float, int]:
    """Trivial jobs through the store from `threads` threads: claim, then complete at once.
    Jobs (each one claim and one completion) per second, and how many."""
    result = {"outputs": [{"file": "bench.png", "content_type": "image/png", "bytes": 1}]}
    done = [0] * threads
    errors: list[BaseException] = []
    deadline = time.monotonic() + seconds

    def run(index: int) -> None:
        try:
            while time.monotonic() < deadline:
                claim = store.claim(worker_id=f"bench-claims-{index}", lease_seconds=60)
                if claim is None:
                    return  # the queue ran out
                store.complete(claim, result=result)
                done[index] += 1
        except BaseException as error:
            errors.append(error)

    started = time.monotonic()
    workers = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + 60)
    elapsed = time.monotonic() - started
    if errors:
        raise errors[0]
    return sum(done) / elapsed, sum(done)


# --- HTTP measurements -------------------------------------------------------------------


@dataclass
class Bench:
    options: Options
    load: HttpLoad

    def poll(self, url: str, key: str, repeats: int | None = None) -> Load:
        """Status polls (or any GET) at full load: a warm-up, then the median of `repeats`
        runs (--repeats by default)."""
        o = self.options
        if o.warmup_seconds > 0:
            self.load.run(url, key, connections=o.connections, seconds=o.warmup_seconds)
        return median_load(
            [
                self.load.run(url, key, connections=o.connections, seconds=o.poll_seconds)
                for _ in range(o.repeats if repeats is None else repeats)
            ]
        )


def sequential_submits(
    client: httpx.Client, url: str, body: dict[str, Any], count: int, keyed: str | None = None
) -> tuple[list[float], str]:
    """Latencies in ms of `count` submits one after the other, and the last request id."""
    latencies = []
    request_id = ""
    for n in range(count):
        headers = {"Idempotency-Key": f"{keyed}-{n}"} if keyed else None
        start = time.perf_counter()
        response = client.post(url, json=body, headers=headers)
        latencies.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.text
        request_id = response.json()["request_id"]
    return latencies, request_id


def since_finished_ms(result: dict[str, Any]) -> float:
    assert result["status"] == "succeeded", result
    return (time.time() - parse_time(result["finished_at"])) * 1000


def stream_notice_ms(client: httpx.Client, request_id: str) -> float:
    url = f"{client.base_url}/v1/requests/{request_id}/stream"
    with client.stream("GET", url) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and '"output"' in line:
                return since_finished_ms(json.loads(line.removeprefix("data: ")))
    raise RuntimeError("the stream ended without a result")


def poll_notice_ms(client: httpx.Client, request_id: str) -> float:
    """What a polite poller sees: it asks again only after Retry-After."""
    while True:
        response = client.get(f"/v1/requests/{request_id}/result")
        if "retry-after" not in response.headers:
            return since_finished_ms(response.json())
        time.sleep(float(response.headers["retry-after"]))


# --- the phases --------------------------------------------------------------------------


def api_phases(
    bench: Bench, backend: Backend, body: dict[str, Any], figures: Figures, two_processes: bool
) -> None:
    """Everything measured on an API process with no worker, on one data dir."""
    o = bench.options
    data_dir = backend.data_dir("api")
    server = backend.serve(data_dir, "--no-worker")
    key = server.read_first_key()
    key_id = key.split("_")[1]
    submit_url = f"{server.base}/v1/models/{ENDPOINT}"
    status_url = f"{server.base}/v1/requests/{{}}/status"

    say(f"{backend.name}: {o.submits} sequential submits, plain and keyed")
    with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        sequential_submits(client, submit_url, body, 20)  # warm-up
        plain, request_id = sequential_submits(client, submit_url, body, o.submits)
        keyed, _ = sequential_submits(client, submit_url, body, o.submits, keyed="bench")
    figures["submit_p50"], figures["submit_p99"] = percentile(plain, 0.5), percentile(plain, 0.99)
    figures["keyed_p50"], figures["keyed_p99"] = percentile(keyed, 0.5), percentile(keyed, 0.99)

    store = backend.store(data_dir)
    with store.engine.connect() as conn:
        input_text = conn.execute(select(jobs.c.input).where(jobs.c.id == request_id)).scalar_one()

    def fill_queue(count: int) -> list[str]:
        return insert_queued(
            store.engine, count, key_id=key_id, input_text=input_text, base_url=server.base
        )

    if o.runs("submit"):
        # Closed loop (each submitter sends again at once: the server's throughput, and the
        # latency of a saturated server), then paced (below saturation: the latency clients
        # see in service).
        for label, pause_ms in (("conc", 0), ("paced", o.submit_pause_ms)):
            say(
                f"{backend.name}: {o.submitters} submitters for {o.submit_seconds:g} s, "
                + (f"each pausing {pause_ms} ms on average" if pause_ms else "closed loop")
            )
            submits = bench.load.run(
                submit_url,
                key,
                connections=o.submitters,
                seconds=o.submit_seconds,
                method="POST",
                body=json.dumps(body).encode(),
                pause_ms=pause_ms,
            )
            figures[f"{label}_submit_p50"] = submits.p50_ms
            figures[f"{label}_submit_p99"] = submits.p99_ms
            figures[f"{label}_submit_rate"] = submits.rate

    # Running jobs, made by the store's own claims: the streams' jobs, and the one polled.
    running = max(1, o.streams if o.runs("streams") else 1)
    if (missing := running - queued_count(store.engine)) > 0:
        fill_queue(missing)
    claims = []
    for _ in range(running):
        claim = store.claim(worker_id="bench-streams", lease_seconds=3600)
        assert claim is not None
        claims.append(claim)
    polled = status_url.format(claims[0].job.id)
    assert server.process is not None
    pid = server.process.pid

    if o.runs("streams"):
        with Changer(store, claims, o.changes_per_second) as changer:
            say(f"{backend.name}: polls with {o.changes_per_second:g} changes/s, no streams")
            quiet = bench.poll(polled, key)
            figures["cpu_no_streams"] = cpu_percent(pid, o.cpu_seconds)
            say(f"{backend.name}: opening {o.streams} event streams")
            paths = [f"/v1/requests/{c.job.id}/stream" for c in claims[: o.streams]]
            streams = OpenStreams(server.port, key, paths).open()
            try:
                time.sleep(1.0)  # the streams' first events are sent
                figures["cpu_streams"] = cpu_percent(pid, o.cpu_seconds)
                say(f"{backend.name}: polls with {o.streams} streams open")
                busy = bench.poll(polled, key)
            finally:
                streams.close()
            figures["changes_rate"] = changer.rate
        figures["poll_p50_no_streams"], figures["poll_rate_no_streams"] = quiet.p50_ms, quiet.rate
        figures["poll_p50_streams"], figures["poll_rate_streams"] = busy.p50_ms, busy.rate
        figures["streams_ratio"] = busy.p50_ms / quiet.p50_ms

    if o.runs("queue"):
        say(f"{backend.name}: queueing {o.queued} jobs")
        tail = fill_queue(o.queued)[-1]
        head = oldest_queued(store.engine)
        if store.engine.dialect.name == "postgresql":
            # Where autovacuum gets within a minute of a bulk load: left to it, its VACUUM and
            # ANALYZE of the 50k new rows land in the middle of a measurement on 2 cores.
            with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE jobs, queue_buckets")
        say(f"{backend.name}: polls at the head and the tail of the queue, alternated")
        runs = [
            (
                bench.poll(status_url.format(head), key, 1),
                bench.poll(status_url.format(tail), key, 1),
            )
            for _ in range(o.repeats)
        ]
        at_head = median_load([head_run for head_run, _ in runs])
        at_tail = median_load([tail_run for _, tail_run in runs])
        figures["poll_head_rate"], figures["poll_head_p50"] = at_head.rate, at_head.p50_ms
        figures["poll_tail_rate"], figures["poll_tail_p50"] = at_tail.rate, at_tail.p50_ms
        figures["tail_head_ratio"] = at_tail.rate / at_head.rate
        say(f"{backend.name}: {o.deep_submits} submits behind {queued_count(store.engine)} jobs")
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            deep, _ = sequential_submits(client, submit_url, body, o.deep_submits)
        figures["deep_submit_p50"] = percentile(deep, 0.5)

    if o.runs("reference"):
        say(f"{backend.name}: Retouch against the reference app, polling a running job")
        with reference_app(backend.database_url(data_dir)) as reference_base:
            polled_there = f"{reference_base}/v1/requests/{claims[0].job.id}/status"
            ours, theirs = [], []
            for _ in range(o.repeats):  # alternated: a slow spell of the machine hits both
                ours.append(bench.poll(polled, key, repeats=1))
                theirs.append(bench.poll(polled_there, key, repeats=1))
        figures["poll_rate_retouch"] = median_load(ours).rate
        figures["poll_rate_reference"] = median_load(theirs).rate
        figures["reference_ratio"] = figures["poll_rate_retouch"] / figures["poll_rate_reference"]
    elif o.runs("processes"):
        figures["poll_rate_retouch"] = bench.poll(polled, key).rate
    server.stop()

    if o.runs("processes") and two_processes:
        say(f"{backend.name}: retouch serve --api-processes 2")
        both = backend.serve(data_dir, "--no-worker", "--api-processes", "2")
        time.sleep(2.0)  # the second process may answer later than the first
        figures["poll_rate_2proc"] = bench.poll(
            f"{both.base}/v1/requests/{claims[0].job.id}/status", key
        ).rate
        figures["processes_ratio"] = figures["poll_rate_2proc"] / figures["poll_rate_retouch"]
        both.stop()

    if o.runs("claims"):
        # Enough queued jobs for any rate this machine reaches.
        wanted = max(20_000, round(2000 * o.claim_seconds))
        if (missing := wanted - queued_count(store.engine)) > 0:
            fill_queue(missing)
        say(f"{backend.name}: claims + completions from {o.claim_threads} threads")
        rate, _ = claims_per_second(store, o.claim_threads, o.claim_seconds)
        figures["claims_rate"] = rate


def worker_phase(o: Options, backend: Backend, body: dict[str, Any], figures: Figures) -> None:
    """With the worker: idle pick-up, per-job overhead at 1K, and job end → client knows."""
    say(f"{backend.name}: with the worker, {o.jobs} preview jobs")
    server = backend.serve(backend.data_dir("worker"))
    api = Api(server.base, server.read_first_key())
    api.wait(api.submit_ok(body), timeout=300)  # warm-up: the worker loads the model
    pickups, overheads, engine, encode = [], [], [], []
    for _ in range(o.jobs):
        time.sleep(0.3)  # let the worker go idle
        result = api.wait(api.submit_ok(body), timeout=300)
        created = parse_time(result["created_at"])
        pickups.append((parse_time(result["started_at"]) - created) * 1000)
        timings = result["timings"]
        total = parse_time(result["finished_at"]) - created
        overheads.append((total - timings["engine_s"] - timings["encode_store_s"]) * 1000)
        engine.append(timings["engine_s"] * 1000)
        encode.append(timings["encode_store_s"] * 1000)
    notice: dict[str, list[float]] = {"stream": [], "wait": [], "poll": []}
    with httpx.Client(base_url=server.base, headers=api.headers, timeout=120) as client:
        for _ in range(max(3, o.jobs // 3)):
            notice["stream"].append(stream_notice_ms(client, api.submit_ok(body)))
            response = client.post(
                f"{server.base}/v1/models/{ENDPOINT}", json=body, headers={"Prefer": "wait=60"}
            )
            notice["wait"].append(since_finished_ms(response.json()))
            notice["poll"].append(poll_notice_ms(client, api.submit_ok(body)))
    server.stop()
    figures["pickup_p50"], figures["pickup_max"] = statistics.median(pickups), max(pickups)
    figures["overhead_p50"] = statistics.median(overheads)
    figures["engine_p50"] = statistics.median(engine)
    figures["encode_p50"] = statistics.median(encode)
    for way, delays in notice.items():
        figures[f"notice_{way}"] = statistics.median(delays)


# --- the table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    label: str
    keys: tuple[str, ...]
    template: str
    target: str = "—"
    met: Callable[..., bool] | None = None
    only: str | None = None  # the one backend the target is for

    def cell(self, figures: Figures) -> str:
        if not all(key in figures for key in self.keys):
            return "n/a"
        return self.template.format(*(figures[key] for key in self.keys))

    def verdict(self, backend: str, figures: Figures) -> str:
        if self.met is None or (self.only is not None and backend != self.only):
            return "—"
        if not all(key in figures for key in self.keys):
            return "n/a"
        return "yes" if self.met(*(figures[key] for key in self.keys)) else "no"


def rows(o: Options) -> list[Row]:
    n = f"{o.queued:,}"
    s = o.streams
    # fmt: off
    return [
        Row("submit p50 / p99, one client", ("submit_p50", "submit_p99"), "{:.2f} / {:.2f} ms",
            "p50 ≤ 5 ms", lambda p50, _: p50 <= 5),
        Row("submit with a new Idempotency-Key p50 / p99, one client",
            ("keyed_p50", "keyed_p99"), "{:.2f} / {:.2f} ms"),
        Row(f"submit p50 / p99, {o.submitters} paced submitters",
            ("paced_submit_p50", "paced_submit_p99"), "{:.2f} / {:.2f} ms",
            "p99 ≤ 20 ms", lambda _, p99: p99 <= 20),
        Row(f"submits per second, {o.submitters} paced submitters", ("paced_submit_rate",),
            "{:,.0f} /s"),
        Row(f"submit p50, {o.submitters} submitters, closed loop", ("conc_submit_p50",),
            "{:.2f} ms"),
        Row(f"submit p99, {o.submitters} submitters, closed loop", ("conc_submit_p99",),
            "{:.2f} ms"),
        Row(f"submits per second, {o.submitters} submitters, closed loop",
            ("conc_submit_rate",), "{:,.0f} /s"),
        Row(f"submit p50, one client, {n} more jobs queued", ("deep_submit_p50",), "{:.2f} ms"),
        Row(f"status polls/s / p50, head of {n} queued", ("poll_head_rate", "poll_head_p50"),
            "{:,.0f} /s / {:.2f} ms"),
        Row(f"status polls/s / p50, tail of {n} queued", ("poll_tail_rate", "poll_tail_p50"),
            "{:,.0f} /s / {:.2f} ms"),
        Row("status polls/s, tail ÷ head", ("tail_head_ratio",), "{:.2f}", "≥ 0.8",
            lambda r: r >= 0.8),
        Row(f"status poll p50, no streams / {s} streams open",
            ("poll_p50_no_streams", "poll_p50_streams"), "{:.2f} / {:.2f} ms"),
        Row(f"status polls/s, no streams / {s} streams open",
            ("poll_rate_no_streams", "poll_rate_streams"), "{:,.0f} / {:,.0f} /s"),
        Row(f"status poll p50, {s} streams ÷ none", ("streams_ratio",), "{:.2f}×", "≤ 2×",
            lambda r: r <= 2),
        Row("idle API process CPU, no streams (changes/s as below)", ("cpu_no_streams",),
            "{:.1f} %"),
        Row(f"idle API process CPU, {s} streams open", ("cpu_streams",), "{:.1f} %",
            "< 10 % of a core", lambda c: c < 10),
        Row("job changes per second meanwhile", ("changes_rate",), "{:.1f} /s", "10–20 /s"),
        Row("status polls/s, Retouch, one process", ("poll_rate_retouch",), "{:,.0f} /s",
            "≥ 2,000 /s", lambda r: r >= 2000),
        Row("status polls/s, reference FastAPI app", ("poll_rate_reference",), "{:,.0f} /s"),
        Row("status polls/s, Retouch ÷ reference", ("reference_ratio",), "{:.2f}", "≥ 0.6",
            lambda r: r >= 0.6),
        Row("status polls/s, --api-processes 2", ("poll_rate_2proc",), "{:,.0f} /s"),
        Row("status polls/s, 2 processes ÷ 1", ("processes_ratio",), "{:.2f}×", "≥ 1.6×",
            lambda r: r >= 1.6),
        Row(f"claims + completions/s, trivial job, {o.claim_threads} threads", ("claims_rate",),
            "{:,.0f} /s", "≥ 500 /s", lambda r: r >= 500),
        Row("idle pick-up p50 / max", ("pickup_p50", "pickup_max"), "{:.1f} / {:.1f} ms",
            "p50 ≤ 20 ms", lambda p50, _: p50 <= 20),
        Row("per-job overhead at 1K p50 (end to end − engine − encoding)", ("overhead_p50",),
            "{:.0f} ms", "≤ 100 ms", lambda v: v <= 100),
        Row("preview engine 1K / PNG encode + store 1K, p50", ("engine_p50", "encode_p50"),
            "{:.0f} / {:.0f} ms"),
        Row("job end → client p50: stream / Prefer: wait / polling",
            ("notice_stream", "notice_wait", "notice_poll"), "{:.1f} / {:.1f} / {:.0f} ms"),
    ]
    # fmt: on


def print_table(o: Options, results: dict[str, Figures], load: HttpLoad, notes: list[str]) -> None:
    backends = list(results)
    header = ["figure", *backends, "target", "met?"]
    table = [header]
    for row in rows(o):
        verdicts = [row.verdict(name, results[name]) for name in backends]
        met = verdicts[0] if len(set(verdicts)) == 1 else " / ".join(verdicts)
        table.append([row.label, *(row.cell(results[name]) for name in backends), row.target, met])
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    print()
    print("Retouch service benchmark (preview model, this machine)")
    if load.wrk:
        print(f"load: wrk -t{load.threads} -c{o.connections}, ", end="")
    else:
        print(f"load: {load.name}, {o.connections} connections (figures are floors), ", end="")
    print(
        f"{o.poll_seconds:g} s per poll load, median of {o.repeats}; "
        f"{o.queued:,} queued, {o.streams} streams, {o.changes_per_second:g} changes/s"
    )
    for note in notes:
        print(f"note: {note}")
    for i, line in enumerate(table):
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        print("| " + " | ".join(cells) + " |")
        if i == 0:
            print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    if len(backends) > 1:
        print("met?: one answer for both, or sqlite / postgresql")


def main() -> None:
    o, load = parse_options()
    say(f"load generator: {load.name}")
    notes: list[str] = []
    if load.missing_wrk:
        notes.append(
            "wrk is not installed (apt-get install -y wrk): the Python load generator used "
            "instead costs the server's cores more, so the HTTP figures are lower"
        )
        say("wrk not found: falling back to the Python load generator")
    two_processes = "--api-processes" in serve_flags()
    if o.runs("processes") and not two_processes:
        notes.append("`retouch serve --help` has no --api-processes: 2 processes ÷ 1 is n/a")

    root = Path(tempfile.mkdtemp(prefix="retouch-bench-"))
    models = root / "models"
    if o.runs("worker"):
        from retouch.engine.preview import PREVIEW_DIRNAME, ensure_preview_model

        ensure_preview_model(models / PREVIEW_DIRNAME)
    else:
        models.mkdir()
    images = start_image_server()
    # The per-key limits stay on, out of reach: their cost is part of every submit measured.
    env = server_env(
        RETOUCH_MAX_QUEUED_JOBS="100000000",
        RETOUCH_KEY_MAX_QUEUED="100000000",
        RETOUCH_KEY_SUBMIT_RATE="100000000/minute",
        **o.server_env,
    )
    body = {"prompt": "make it blue", "image_urls": [images.url("/square.png")]}
    bench = Bench(o, load)
    results: dict[str, Figures] = {}
    databases = BenchDatabases(o.database_url) if o.database_url else None
    try:
        for name, backend_databases in [("sqlite", None), ("postgresql", databases)]:
            if name == "postgresql" and databases is None:
                continue
            with ExitStack() as stack:
                backend = Backend(name, root, models, backend_databases, env, stack)
                figures = results.setdefault(name, {})
                api_phases(bench, backend, body, figures, two_processes)
                if o.runs("worker"):
                    worker_phase(o, backend, body, figures)
    finally:
        e2e_support.new_database = None
        if databases is not None:
            databases.drop_created()
        images.server.shutdown()
    print_table(o, results, load, notes)
    if o.json is not None:
        sizes = {
            name: sorted(value) if isinstance(value, frozenset) else value
            for name, value in asdict(o).items()
            if name not in ("database_url", "json")  # a URL may hold a password
        }
        written = {"load_generator": load.name, "options": sizes, "notes": notes}
        written["results"] = results
        o.json.write_text(json.dumps(written, indent=2) + "\n")


if __name__ == "__main__":
    main()
