"""Load for the service benchmark, on 127.0.0.1 only: keep-alive HTTP load from `wrk` when it is
installed (the issue's figures were taken with `wrk -t2 -c32`), else from a Python generator on
raw sockets, and a set of event streams held open in a thread of their own.

On a 2-core machine the load generator shares the cores with the server under test: wrk costs
the server far less than any Python client would, so the Python figures are floors.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

# What wrk's Lua `done` hook prints: one line the bench parses, independent of wrk's own text.
_WRK_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests": %d, "duration_us": %d, "socket_errors": %d, "bad_status": %d, '
    .. '"p50_us": %.1f, "p99_us": %.1f}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class Load:
    """What one load run measured: completed requests over its duration, and their latency."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def median_load(loads: list[Load]) -> Load:
    """Each figure's median over repeated runs (the runs' medians, one by one)."""
    return Load(
        requests=round(statistics.median(load.requests for load in loads)),
        seconds=statistics.median(load.seconds for load in loads),
        p50_ms=statistics.median(load.p50_ms for load in loads),
        p99_ms=statistics.median(load.p99_ms for load in loads),
    )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class LoadError(RuntimeError):
    """The load run failed, or the server answered something other than 2xx."""


@dataclass(frozen=True)
class HttpLoad:
    """Runs keep-alive load against one URL with a bearer key: wrk when `wrk` is the path of its
    binary, else the Python generator. Every run is bounded by `seconds` (wrk: whole seconds)."""

    wrk: str | None
    threads: int = 2
    missing_wrk: bool = False  # wrk was wanted ("auto") but is not installed

    @classmethod
    def choose(cls, wanted: str, threads: int) -> HttpLoad:
        """wanted: "auto" (wrk if found), "wrk" (LoadError without it) or "python"."""
        found = shutil.which("wrk") if wanted in ("auto", "wrk") else None
        if wanted == "wrk" and found is None:
            raise LoadError("--load-generator wrk: no `wrk` on PATH (apt-get install -y wrk)")
        return cls(found, threads, missing_wrk=wanted == "auto" and found is None)

    @property
    def name(self) -> str:
        return "wrk" if self.wrk else "python (asyncio, raw sockets)"

    def run(
        self,
        url: str,
        key: str,
        *,
        connections: int,
        seconds: float,
        method: str = "GET",
        body: bytes | None = None,
        pause_ms: int = 0,
    ) -> Load:
        """pause_ms: each connection waits a random time of this mean after an answer before
        its next request (paced clients, not a closed loop that saturates the server; the
        pause is not part of the latency). Exponentially distributed, as independent clients'
        requests arrive: a fixed pause would keep the connections in step, firing all at
        once like one client 32 times over."""
        if self.wrk is not None:
            return self._wrk(url, key, connections, seconds, method, body, pause_ms)
        return asyncio.run(python_load(url, key, connections, seconds, method, body, pause_ms))

    def _wrk(
        self,
        url: str,
        key: str,
        connections: int,
        seconds: float,
        method: str,
        body: bytes | None,
        pause_ms: int,
    ) -> Load:
        assert self.wrk is not None
        lines = [f'wrk.method = "{method}"']
        if pause_ms:
            lines.append(
                f"delay = function() return -{int(pause_ms)} * math.log(1 - math.random()) end"
            )
        if body is not None:
            text = body.decode()
            assert "]==]" not in text
            lines += [
                f"wrk.body = [==[{text}]==]",
                'wrk.headers["Content-Type"] = "application/json"',
            ]
        whole = max(1, math.ceil(seconds))
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write("\n".join(lines) + "\n" + _WRK_DONE)
        try:
            done = subprocess.run(
                [
                    self.wrk,
                    f"-t{max(1, min(self.threads, connections))}",
                    f"-c{connections}",
                    f"-d{whole}s",
                    "--timeout",
                    "10s",
                    "-s",
                    script.name,
                    "-H",
                    f"Authorization: Bearer {key}",
                    url,
                ],
                capture_output=True,
                text=True,
                timeout=whole + 60,
            )
        finally:
            Path(script.name).unlink()
        for line in done.stdout.splitlines():
            if line.startswith("BENCH-JSON "):
                summary = json.loads(line.removeprefix("BENCH-JSON "))
                break
        else:
            raise LoadError(f"wrk printed no summary (rc {done.returncode}): {done.stderr}")
        if summary["bad_status"]:
            raise LoadError(f"{summary['bad_status']} answers were not 2xx from {method} {url}")
        if summary["requests"] == 0:
            raise LoadError(f"no request to {url} completed: {done.stdout} {done.stderr}")
        return Load(
            requests=int(summary["requests"]),
            seconds=summary["duration_us"] / 1e6,
            p50_ms=summary["p50_us"] / 1000,
            p99_ms=summary["p99_us"] / 1000,
        )


async def python_load(
    url: str,
    key: str,
    connections: int,
    seconds: float,
    method: str = "GET",
    body: bytes | None = None,
    pause_ms: int = 0,
) -> Load:
    """Keep-alive requests on raw sockets: an HTTP client library would cost more CPU than the
    server under test, and the figure would measure the client."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    request = (head + "\r\n").encode() + (body or b"")
    latencies: list[float] = []
    started = time.monotonic()
    deadline = started + seconds

    async def one_connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.monotonic() < deadline:
                sent = time.perf_counter()
                writer.write(request)
                answer = await reader.readuntil(b"\r\n\r\n")
                if not answer.startswith(b"HTTP/1.1 2"):
                    raise LoadError(answer.decode(errors="replace"))
                length = 0
                for line in answer.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                latencies.append((time.perf_counter() - sent) * 1000)
                if pause_ms:
                    await asyncio.sleep(random.expovariate(1000 / pause_ms))
        finally:
            writer.close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))
    if not latencies:
        raise LoadError(f"no request to {url} completed")
    return Load(
        requests=len(latencies),
        seconds=time.monotonic() - started,
        p50_ms=percentile(latencies, 0.5),
        p99_ms=percentile(latencies, 0.99),
    )


class OpenStreams:
    """`GET` each path as an event stream and hold it open, reading and discarding what comes,
    on an event loop in a thread of its own, until `close()`. `open()` returns once every stream
    has answered 200 (LoadError otherwise, or after `timeout`)."""

    def __init__(self, port: int, key: str, paths: list[str], *, opening_at_once: int = 50):
        self.port = port
        self.key = key
        self.paths = paths
        self.opening_at_once = opening_at_once
        self.received_bytes = 0
        self.error: BaseException | None = None
        self._opened = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def open(self, timeout: float = 120.0) -> OpenStreams:
        self._thread = threading.Thread(target=self._run, name="bench-streams", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.close()
            raise LoadError(f"only {self._opened} of {len(self.paths)} streams opened in time")
        if self.error is not None:
            self.close()
            raise LoadError(f"a stream failed: {self.error!r}")
        return self

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        gate = asyncio.Semaphore(self.opening_at_once)
        tasks = [asyncio.create_task(self._one(path, gate)) for path in self.paths]
        await self._stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, path: str, gate: asyncio.Semaphore) -> None:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Authorization: Bearer {self.key}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        writer: asyncio.StreamWriter | None = None
        try:
            async with gate:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise LoadError(head.decode(errors="replace"))
            self._opened += 1
            if self._opened == len(self.paths):
                self._ready.set()
            while chunk := await reader.read(65536):
                self.received_bytes += len(chunk)
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            if self.error is None:
                self.error = error
            self._ready.set()
        finally:
            if writer is not None:
                writer.close()
