"""`make fuzz`: Schemathesis against a live `retouch serve`, bounded in examples and time.

Starts `retouch serve` (with its worker) on 127.0.0.1 and a fresh temp data dir, reads the key
it prints at its first start, runs `schemathesis run` on its /openapi.json with that key and
every default check (response-schema conformance included), then stops the server (only the
processes this script started: the server's own process group) and removes the data dir.
Exits with Schemathesis' status: non-zero on any failure, or when the run overruns its limit.

    .venv/bin/python bench/fuzz_api.py [--max-examples N] [--timeout S] [-- SCHEMATHESIS ARGS]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("RETOUCH_")}
    # Image URLs on this machine may be fetched (a fuzzer's 127.0.0.1 URLs reach real code).
    env.update({"HF_HUB_OFFLINE": "1", "RETOUCH_FETCH_ALLOW": "127.0.0.1"})
    return env


def stop_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, then SIGKILL, to the process group this script created for `process`."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # the worker child too, if it outlived serve
    process.wait()


def start_server(data_dir: Path, port: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    key_file = data_dir.parent / "stdout.txt"
    with key_file.open("wb") as stdout, log.open("wb") as stderr:
        process = subprocess.Popen(
            [
                *(str(BIN / "retouch"), "serve", "--host", "127.0.0.1", "--port", str(port)),
                *("--data-dir", str(data_dir)),
            ],
            stdout=stdout,
            stderr=stderr,
            env=server_env(),
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"retouch serve exited:\n{log.read_text()}")
        lines = key_file.read_text().split()
        try:
            ready = httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200
        except httpx.TransportError:
            ready = False
        if ready and lines:
            return process, lines[0]
        time.sleep(0.2)
    stop_group(process, 10)
    raise RuntimeError(f"retouch serve did not start in 90 s:\n{log.read_text()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=20, help="test cases per operation")
    parser.add_argument("--timeout", type=float, default=480, help="wall-clock limit, seconds")
    parser.add_argument("--seed", type=int, default=1, help="Schemathesis' random seed")
    parser.add_argument("schemathesis_args", nargs="*", help="more `schemathesis run` options")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="retouch-fuzz-"))
    port = free_port()
    log = work / "serve.log"
    server, key = start_server(work / "data", port, log)
    try:
        command = [
            str(BIN / "schemathesis"),
            "run",
            f"http://127.0.0.1:{port}/openapi.json",
            "--header",
            f"Authorization: Bearer {key}",
            "--max-examples",
            str(args.max_examples),
            "--seed",
            str(args.seed),
            "--request-timeout",
            "30",
            "--generation-database",
            "none",
            "--no-color",
            *args.schemathesis_args,
        ]
        print("+", " ".join(command).replace(key, "rtk_…"), flush=True)
        hooks = {"SCHEMATHESIS_HOOKS": "fuzz_hooks", "PYTHONPATH": str(Path(__file__).parent)}
        fuzzer = subprocess.Popen(command, start_new_session=True, env={**os.environ, **hooks})
        try:
            return fuzzer.wait(args.timeout)
        except subprocess.TimeoutExpired:
            print(f"fuzz: schemathesis overran {args.timeout:.0f} s; stopped", file=sys.stderr)
            stop_group(fuzzer, 5)
            return 124
    finally:
        stop_group(server, 20)
        if server.returncode not in (0, -signal.SIGTERM):
            print(f"fuzz: the server exited {server.returncode}; its log:", file=sys.stderr)
            print(log.read_text(), file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
