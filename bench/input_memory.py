"""Worker memory against the per-request input pixel budget (RETOUCH_MAX_REQUEST_PIXELS).

Each configuration (how many inputs, how many megapixels each, the budget in force) runs ONE
edit job in a fresh `python` subprocess, so each peak is that configuration's alone. The child
opens a data dir's services (SQLite store, local storage) and builds the worker as `retouch
worker` does (every served engine loaded, the upscaler, the NSFW classifier), reads its RSS,
submits one job to the store and runs it with the real `Worker.run_once` (claim, fetch over
HTTP, decode under the budget, moderation, references, engine, resize, encode, store), then
reads `ru_maxrss`. The engine is the default endpoint's preview model (tiny random weights) on
the CPU: on a GPU machine the real model adds its own fixed memory (weights, in GPU memory and,
while loading, host RSS), which the budget does not control. What the budget controls is the
part that grows with the inputs: peak − load.

The inputs are flat-colour PNGs, as in the report that started this ("20 inputs of 50 MP each,
3 MB of PNGs, pushed the worker to 4.6 GB"): tiny on the wire, full size once decoded. They are
served by a local http.server on 127.0.0.1 (RETOUCH_FETCH_ALLOW=127.0.0.1), each input its own
URL. The bench also records, by wrapping `edit_job.load_inputs` in the child (the worker's code
is unchanged), the RSS once every input is decoded, to show how much of the growth is the
decoded images held at once.

    .venv/bin/python bench/input_memory.py [--budget-mp 100] [--timeout 300]
        [--cases 1x1,20x1,20x2.5,20x5,20x10,1x50,20x50,20x10@,20x50@] [--repeats 1]

A case is INPUTSxMP; a trailing @ runs it under the budget given by --budget-mp (default: the
current default, 100 MP), without @ under a budget large enough to let it through, so its
memory can be measured. One run per case (peak RSS is a maximum, not a sample to take a
median of; --repeats N > 1 reports the median of N fresh subprocesses).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path
from typing import Any, ClassVar

MIB = 1024 * 1024
GIB_LIMIT_MIB = 2048.0
DEFAULT_CASES = "1x1,20x1,20x2.5,20x5,20x10,1x50,20x50,20x10@,20x50@"
PROMPT = "turn the sky into a sunset, keep everything else unchanged"
CHILD = "--child"


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / MIB


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- inputs ---------------------------------------------------------------------------------


def dimensions(megapixels: float) -> tuple[int, int]:
    """A 2:1-ish size of about `megapixels` MP, never above it (50 MP is the per-image cap)."""
    pixels = round(megapixels * 1_000_000)
    width = math.isqrt(pixels * 2)
    return width, pixels // width


def flat_png(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buffer = BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


class _Handler(BaseHTTPRequestHandler):
    images: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        data = self.images.get(self.path.split("?")[0])
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: Any) -> None:
        pass


def serve_images(sizes: set[tuple[int, int]]) -> tuple[ThreadingHTTPServer, dict[str, int]]:
    """An image server on 127.0.0.1 with one flat PNG per size, at /W_H.png; and their sizes."""
    _Handler.images = {f"/{w}_{h}.png": flat_png((w, h), (200, 60, 30)) for w, h in sizes}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, {path: len(data) for path, data in _Handler.images.items()}


# --- one job, in a child process ------------------------------------------------------------


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Build the worker, run one job; the figures as a dict (printed as JSON by main)."""
    from retouch.config import Settings
    from retouch.contract.nano_banana_edit import NanoBananaEditInput
    from retouch.served_endpoints import load_endpoints
    from retouch.services import open_services
    from retouch.worker import edit_job
    from retouch.worker.runner import build_worker, loaded_engines

    overrides: dict[str, Any] = {"data_dir": Path(spec["data_dir"])}
    settings = Settings(**overrides)  # and RETOUCH_* from the environment, as the CLI reads them
    services = open_services(settings)
    endpoints = load_endpoints(settings)

    worker = build_worker(settings, services, endpoints, loaded_engines(settings, endpoints))
    figures: dict[str, Any] = {
        "budget_mp": settings.max_request_pixels / 1e6,
        "load_rss_mib": rss_mib(),
        "load_peak_mib": peak_rss_mib(),
    }
    if not spec["urls"]:  # warm-up: builds and caches the preview model
        services.close()
        return figures

    original = edit_job.load_inputs

    def measured(*arguments: Any, **keywords: Any) -> Any:
        images = original(*arguments, **keywords)
        figures["decoded_rss_mib"] = rss_mib()
        return images

    edit_job.load_inputs = measured  # run_edit_job calls it by its module-level name
    record, _ = services.keys.create("bench")
    body = {"prompt": PROMPT, "image_urls": spec["urls"]}
    fields = NanoBananaEditInput.model_validate(body).model_dump(mode="json")
    job = services.store.submit(
        key_id=record.id, endpoint=endpoints[0].id, input=fields, max_queued=1000
    )
    began = time.perf_counter()
    if not worker.run_once():
        raise RuntimeError("the worker found no job to run")
    figures["job_s"] = time.perf_counter() - began
    figures["peak_mib"] = peak_rss_mib()
    done = services.store.get(job.id, key_id=record.id)
    assert done is not None
    figures["state"] = str(done.state.value if hasattr(done.state, "value") else done.state)
    figures["error"] = done.error_message
    services.close()
    return figures


# --- the parent -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    inputs: int
    megapixels: float
    at_budget: bool
    """True: under --budget-mp; False: under a budget the inputs fit in."""

    @classmethod
    def parse(cls, text: str) -> Case:
        at_budget = text.endswith("@")
        inputs, megapixels = text.rstrip("@").split("x")
        return cls(int(inputs), float(megapixels), at_budget)

    @property
    def size(self) -> tuple[int, int]:
        return dimensions(self.megapixels)

    @property
    def total_mp(self) -> float:
        width, height = self.size
        return self.inputs * width * height / 1e6


def run_child(
    data_dir: Path, urls: list[str], budget: int, timeout: float, env: dict[str, str]
) -> dict[str, Any]:
    spec = json.dumps({"data_dir": str(data_dir), "urls": urls})
    child_env = env | {"RETOUCH_MAX_REQUEST_PIXELS": str(budget)}
    try:
        done = subprocess.run(
            [sys.executable, __file__, CHILD, spec],
            env=child_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"failed": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"failed": f"exit {done.returncode}: {' | '.join(tail)}"}
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def outcome(figures: dict[str, Any]) -> str:
    if "failed" in figures:
        return f"bench error: {figures['failed']}"
    if figures["state"] == "succeeded":
        return "succeeded"
    return f"{figures['state']}: {figures['error']}"


def median_of(runs: list[dict[str, Any]], name: str) -> float | None:
    values = [run[name] for run in runs if name in run]
    return statistics.median(values) if values else None


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=DEFAULT_CASES, help=f"[{DEFAULT_CASES}]")
    parser.add_argument(
        "--budget-mp", type=float, default=100.0, help="the budget of @ cases, MP [100]"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="per subprocess, s [300]")
    parser.add_argument("--repeats", type=int, default=1, help="fresh subprocesses per case [1]")
    arguments = parser.parse_args()
    cases = [Case.parse(text) for text in arguments.cases.split(",")]
    budget = round(arguments.budget_mp * 1e6)

    server, png_bytes = serve_images({case.size for case in cases})
    base = f"http://127.0.0.1:{server.server_address[1]}"
    env = os.environ | {
        "RETOUCH_FETCH_ALLOW": "127.0.0.1",
        "RETOUCH_DEVICE": "cpu",
        "RETOUCH_LOG_FORMAT": os.environ.get("RETOUCH_LOG_FORMAT", "text"),
    }
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="retouch-input-memory-") as tmp:
        data_dir = Path(tmp) / "data"
        say("warm-up: building the preview model (cached in the data dir for the cases)")
        warm = run_child(data_dir, [], budget, arguments.timeout, env)
        if "failed" in warm:
            raise SystemExit(f"warm-up failed: {warm['failed']}")
        for case in cases:
            width, height = case.size
            path = f"/{width}_{height}.png"
            urls = [f"{base}{path}?input={index}" for index in range(case.inputs)]
            fitting = math.ceil(case.total_mp) * 1_000_000
            case_budget = budget if case.at_budget else max(budget, fitting)
            say(f"{case.inputs} x {width}×{height} under a {case_budget / 1e6:.0f} MP budget")
            runs = [
                run_child(data_dir, urls, case_budget, arguments.timeout, env)
                for _ in range(arguments.repeats)
            ]
            load, peak = median_of(runs, "load_rss_mib"), median_of(runs, "peak_mib")
            decoded = median_of(runs, "decoded_rss_mib")
            seconds = median_of(runs, "job_s")
            rows.append(
                [
                    str(case.inputs),
                    f"{case.megapixels:g}",
                    f"{case.total_mp:.0f}",
                    f"{case.inputs * png_bytes[path] / MIB:.2f}",
                    f"{case_budget / 1e6:g}",
                    fmt(load),
                    fmt(decoded),
                    fmt(peak),
                    fmt(None if peak is None or load is None else peak - load),
                    "-" if seconds is None else f"{seconds:.1f}",
                    outcome(runs[-1]),
                ]
            )
            say(f"  {rows[-1][-1][:100]}")
    server.shutdown()

    header = [
        "inputs",
        "MP each",
        "MP total",
        "PNG MiB",
        "budget MP",
        "RSS load MiB",
        "RSS decoded MiB",
        "peak RSS MiB",
        "peak-load MiB",
        "job s",
        "outcome",
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.rjust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]))
    print(
        f"\n{len(cases)} cases, one fresh worker process each ({arguments.repeats} run(s), "
        f"median); preview engine on the CPU. 'RSS decoded': right after every input was "
        f"decoded. Target: peak RSS under {GIB_LIMIT_MIB:.0f} MiB at 20 inputs."
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == CHILD:
        print(json.dumps(child(json.loads(sys.argv[2]))))
    else:
        main()
