"""Scaling out: API processes and workers on separate hosts that share only PostgreSQL and an
S3 bucket (each "host" here is a data dir of its own), and `retouch serve --api-processes N`
running N API processes on one port."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TypeVar

import pytest

from e2e_support import (
    Api,
    ImageServer,
    RetouchProcess,
    database_url,
    make_image,
    seed_data_dir,
    server_env,
)
from unit.moto_s3 import REGION, moto_s3
from webhook_receiver import secret, submitted, webhook_receiver

EDIT = {"prompt": "x", "resolution": "0.5K"}
T = TypeVar("T")


# --- processes, read from /proc (Linux, as the e2e tier already assumes) --------------------


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The fields after the command's closing parenthesis: state, then the parent's pid.
            state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, IndexError):
            continue
        if int(parent) == pid and state != "Z":
            found.append(int(stat.parent.name))
    return found


def command_line(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def api_processes(server: RetouchProcess) -> set[int]:
    """uvicorn's API processes: its parent spawns them with multiprocessing."""
    assert server.process is not None
    return {
        pid
        for pid in children_of(server.process.pid)
        if any(b"spawn_main" in argument for argument in command_line(pid))
    }


def worker_of(server: RetouchProcess) -> int:
    assert server.process is not None
    [worker] = [pid for pid in children_of(server.process.pid) if b"worker" in command_line(pid)]
    return worker


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def eventually(read: Callable[[], T], holds: Callable[[T], bool], timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = read()
        if holds(value):
            return value
        time.sleep(0.05)
    raise AssertionError(f"never held; last {value!r}")


def socket_inode(server_port: int, client_port: int) -> int:
    """The server's end of the loopback connection from client_port, in /proc/net/tcp."""
    local, remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] == remote:
            return int(fields[9])
    raise AssertionError(f"no connection from port {client_port}")


def answered_by(server: RetouchProcess, candidates: set[int]) -> int:
    """Which of the processes answered a request on a new connection: the one holding the
    server's end of it (kept open after the answer)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("GET", "/openapi.json")
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        assert connection.sock is not None
        held = f"socket:[{socket_inode(server.port, connection.sock.getsockname()[1])}]"
        owners = [
            pid
            for pid in candidates
            for descriptor in Path(f"/proc/{pid}/fd").iterdir()
            if os.readlink(descriptor) == held
        ]
    finally:
        connection.close()
    assert len(owners) == 1, owners
    return owners[0]


# --- hosts sharing PostgreSQL and S3 ----------------------------------------------------------


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_api_hosts_and_a_worker_host_share_only_postgresql_and_s3(
    backend: str, tmp_path: Path, models_cache: Path
) -> None:
    if backend != "postgresql":
        pytest.skip("hosts share a job store only on PostgreSQL: SQLite is one host's file")
    hosts = [tmp_path / name for name in ("api-1", "api-2", "worker")]
    database = database_url(hosts[0])
    with moto_s3() as s3, ExitStack() as stack:
        env = server_env(
            RETOUCH_STORAGE_URL=f"s3://{s3.new_bucket()}/retouch",
            RETOUCH_S3_ENDPOINT_URL=s3.endpoint_url,
            RETOUCH_S3_REGION=REGION,
        )
        shared = ["--database-url", database]
        first = RetouchProcess(hosts[0], env).serve("--no-worker", *shared)
        stack.callback(first.stop)
        key = first.read_first_key()  # the second finds it in the database: no key of its own
        second = RetouchProcess(hosts[1], env).serve("--no-worker", *shared)
        stack.callback(second.stop)
        seed_data_dir(hosts[2], models_cache)
        worker_log = stack.enter_context(open(tmp_path / "worker.log", "w"))
        worker = subprocess.Popen(
            [sys.executable, "-m", "retouch", "worker", "--data-dir", str(hosts[2]), *shared],
            stdout=subprocess.DEVNULL,
            stderr=worker_log,
            text=True,
            env=env,
        )
        stack.callback(stop, worker)
        one, two = Api(first.base, key), Api(second.base, key)

        upload = two.http.post(
            f"{two.base}/v1/files",
            files={"file": ("photo.png", make_image(256, 256), "image/png")},
            headers=two.headers,
        )
        assert upload.status_code == 200, upload.text
        upload_url = upload.json()["url"]
        webhook_secret = secret(two)
        assert secret(one) == webhook_secret
        with webhook_receiver(webhook_secret) as receiver:
            # Submitted through API 1 with API 2's upload: the worker reads it from the bucket.
            request_id = submitted(one, receiver.url, upload_url)
            result = two.wait(request_id)
            assert result["status"] == "succeeded", result
            receiver.wait_for(lambda got: any(r.verified is not None for r in got))
        delivered = next(r.verified for r in receiver.received if r.verified is not None)
        assert delivered["request_id"] == request_id and delivered["status"] == "succeeded"
        assert one.result(request_id).json()["status"] == "succeeded"

        # URLs signed by one API process verify on the other: one deployment, one secret.
        output_url = result["output"]["image"]
        assert output_url.startswith(second.base)
        _, image = two.download(output_url)
        _, same = one.download(output_url.replace(second.base, first.base, 1))
        assert image.size == same.size == (512, 512)
        _, uploaded = one.download(upload_url.replace(second.base, first.base, 1))
        assert uploaded.size == (256, 256)
        # Nothing was written to a host's disk: every file is in the bucket.
        assert not any((host / "outputs").exists() for host in hosts)
        assert worker.poll() is None


# --- serve --api-processes N ----------------------------------------------------------------


def test_api_processes_share_the_port_are_replaced_and_stop_with_the_worker(
    data_dir: Path, image_server: ImageServer
) -> None:
    server = RetouchProcess(data_dir, server_env()).serve("--api-processes", "2")
    try:
        api = Api(server.base, server.read_first_key())
        started = eventually(lambda: api_processes(server), lambda pids: len(pids) == 2)
        request_id = api.submit_ok({**EDIT, "image_urls": [image_server.url("/square.png")]})
        assert api.wait(request_id)["status"] == "succeeded"
        worker = worker_of(server)

        # Both answer: with the process that answered stopped (SIGSTOP), it cannot accept, so
        # a new connection is answered by the other.
        first = answered_by(server, started)
        os.kill(first, signal.SIGSTOP)
        try:
            other = answered_by(server, started)
        finally:
            os.kill(first, signal.SIGCONT)
        assert {first, other} == started

        # uvicorn's parent replaces an API process that dies.
        os.kill(first, signal.SIGKILL)
        now = eventually(
            lambda: api_processes(server), lambda pids: len(pids) == 2 and first not in pids
        )
        assert other in now
        assert api.status(request_id).json()["status"] == "completed"

        server.stop(signal.SIGTERM)
        assert server.process is not None and server.process.returncode == 0
        assert [pid for pid in [*now, worker] if running(pid)] == []
    finally:
        server.stop()


def test_sigint_stops_every_api_process_and_the_worker(data_dir: Path) -> None:
    server = RetouchProcess(data_dir, server_env()).serve("--api-processes", "2")
    try:
        server.read_first_key()
        children = eventually(lambda: api_processes(server), lambda pids: len(pids) == 2)
        worker = worker_of(server)
        server.stop(signal.SIGINT)
        assert [pid for pid in [*children, worker] if running(pid)] == []
    finally:
        server.stop()
