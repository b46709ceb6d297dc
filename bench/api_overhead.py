"""Benchmark of the service around the model, on the preview model, on this machine.

Starts real `retouch serve` processes on 127.0.0.1 with a local image server and prints:
submit latency p50/p99 (plain and with an Idempotency-Key), status polls per second from one
server process, idle pick-up latency p50, per-job overhead (end-to-end time minus engine and
encoding) at 1K, and how long after a job ends a client learns it: over the event stream,
from `Prefer: wait`, and by polling as Retry-After says.

    .venv/bin/python bench/api_overhead.py [--submits 300] [--poll-seconds 5] [--jobs 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from e2e_support import (
    Api,
    RetouchProcess,
    seed_data_dir,
    server_env,
    start_image_server,
)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def poll_load(port: int, path: str, key: str, connections: int, seconds: float) -> int:
    """Keep-alive GETs on raw sockets: an HTTP client library would cost more CPU than the
    server under test, and the figure would measure the client."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n\r\n"
    ).encode()
    deadline = time.monotonic() + seconds
    done = 0

    async def one_connection() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.monotonic() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode())
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            done += 1
        writer.close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return done


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--submits", type=int, default=300)
    parser.add_argument("--poll-seconds", type=float, default=5.0)
    parser.add_argument("--jobs", type=int, default=15)
    args = parser.parse_args()

    from retouch.engine.preview import PREVIEW_DIRNAME, ensure_preview_model

    root = Path(tempfile.mkdtemp(prefix="retouch-bench-"))
    models = root / "models"
    ensure_preview_model(models / PREVIEW_DIRNAME)
    images = start_image_server()
    env = server_env(RETOUCH_MAX_QUEUED_JOBS="100000")
    body = {"prompt": "make it blue", "image_urls": [images.url("/square.png")]}

    # 1. API only (no worker): submit latency and status polls.
    seed_data_dir(root / "api", models)
    server = RetouchProcess(root / "api", env).serve("--no-worker")
    api = Api(server.base, server.read_first_key())
    with httpx.Client(headers=api.headers) as client:
        url = f"{server.base}/v1/models/google/nano-banana-2/edit"
        for _ in range(20):
            client.post(url, json=body)
        latencies = []
        for _ in range(args.submits):
            start = time.perf_counter()
            response = client.post(url, json=body)
            latencies.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200
        request_id = response.json()["request_id"]
        keyed = []
        for n in range(args.submits):
            start = time.perf_counter()
            response = client.post(url, json=body, headers={"Idempotency-Key": f"bench-{n}"})
            keyed.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200
    path = f"/v1/requests/{request_id}/status"
    polls = asyncio.run(poll_load(server.port, path, api.key, 16, args.poll_seconds))
    server.stop()

    # 2. With the worker: idle pick-up latency and per-job overhead at 1K.
    seed_data_dir(root / "worker", models)
    server = RetouchProcess(root / "worker", env).serve()
    api = Api(server.base, server.read_first_key())
    api.wait(api.submit_ok(body), timeout=300)  # warm-up: the worker loads the model
    pickups, overheads, engine, encode = [], [], [], []
    for _ in range(args.jobs):
        time.sleep(0.3)  # let the worker go idle
        result = api.wait(api.submit_ok(body), timeout=300)
        created = parse_time(result["created_at"])
        pickups.append((parse_time(result["started_at"]) - created) * 1000)
        timings = result["timings"]
        total = parse_time(result["finished_at"]) - created
        overheads.append((total - timings["engine_s"] - timings["encode_store_s"]) * 1000)
        engine.append(timings["engine_s"] * 1000)
        encode.append(timings["encode_store_s"] * 1000)
    notice: dict[str, list[float]] = {
        "event stream": [],
        "Prefer: wait": [],
        "polling (Retry-After)": [],
    }
    with httpx.Client(base_url=server.base, headers=api.headers, timeout=120) as client:
        for _ in range(max(3, args.jobs // 3)):
            notice["event stream"].append(stream_notice_ms(client, api.submit_ok(body)))
            response = client.post(
                f"{server.base}/v1/models/google/nano-banana-2/edit",
                json=body,
                headers={"Prefer": "wait=60"},
            )
            notice["Prefer: wait"].append(since_finished_ms(response.json()))
            notice["polling (Retry-After)"].append(poll_notice_ms(client, api.submit_ok(body)))
    server.stop()
    images.server.shutdown()

    print("Retouch service benchmark (preview model, this machine)")
    print(
        f"submit latency       p50 {percentile(latencies, 0.5):7.2f} ms   "
        f"p99 {percentile(latencies, 0.99):7.2f} ms   ({args.submits} submits)"
    )
    print(
        f"submit with key      p50 {percentile(keyed, 0.5):7.2f} ms   "
        f"p99 {percentile(keyed, 0.99):7.2f} ms   (Idempotency-Key, each new)"
    )
    print(
        f"status polls         {polls / args.poll_seconds:7.0f} /s   "
        f"(one server process, 16 keep-alive connections, {args.poll_seconds:.0f} s)"
    )
    print(
        f"idle pick-up         p50 {statistics.median(pickups):7.2f} ms   "
        f"max {max(pickups):7.2f} ms   ({args.jobs} jobs)"
    )
    print(
        f"per-job overhead 1K  p50 {statistics.median(overheads):7.2f} ms   "
        "(end to end minus engine and encoding)"
    )
    print(
        f"engine 1K            p50 {statistics.median(engine):7.2f} ms   "
        f"encode+store 1K PNG p50 {statistics.median(encode):7.2f} ms"
    )
    for way, delays in notice.items():
        print(
            f"job end -> client    p50 {statistics.median(delays):7.2f} ms   "
            f"({way}, {len(delays)} jobs)"
        )


if __name__ == "__main__":
    main()
