"""Nothing is lost: a killed worker's job runs again; a restarted server keeps its queue."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from e2e_support import (
    Api,
    ImageServer,
    RetouchProcess,
    database_url,
    server_env,
    worker_process,
)


def worker_processes_of(data_dir: Path) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            arguments = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"worker" in arguments and str(data_dir).encode() in arguments:
            found.append(int(cmdline.parent.name))
    return found


def test_a_job_whose_worker_is_killed_runs_again(data_dir: Path, image_server: ImageServer) -> None:
    env = server_env()
    server = RetouchProcess(data_dir, env).serve("--no-worker")
    try:
        api = Api(server.base, server.read_first_key())
        request_id = api.submit_ok(
            {
                "prompt": "x",
                "image_urls": [image_server.url("/slow.png?seconds=3")],
                "resolution": "0.5K",
            }
        )
        first = worker_process(data_dir, env)
        api.wait_for_status(request_id, "in_progress")
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert api.status(request_id).json()["status"] == "in_progress"

        second = worker_process(data_dir, env)
        try:
            result = api.wait(request_id, timeout=60)
        finally:
            second.terminate()
            second.wait()
        assert result["status"] == "succeeded", result
        assert result["attempts"] == 2
        files = sorted(p.name for p in (data_dir / "outputs" / request_id).iterdir())
        assert len(files) == 1
    finally:
        server.stop()


def test_jobs_left_running_past_max_attempts_fail_as_worker_lost(data_dir: Path) -> None:
    from retouch.jobs.open_store import open_store

    store = open_store(database_url(data_dir), max_attempts=2, webhook_retry_seconds=60)
    job = store.submit(key_id="k", endpoint="e", input={}, max_queued=10)
    for _ in range(2):
        assert store.claim(worker_id="w", lease_seconds=0.01) is not None
        time.sleep(0.02)
    assert store.claim(worker_id="w", lease_seconds=0.01) is None
    failed = store.get(job.id, key_id="k")
    assert failed is not None and failed.state == "failed" and failed.error_code == "worker_lost"
    store.close()


def test_queued_jobs_survive_a_server_restart(data_dir: Path, image_server: ImageServer) -> None:
    env = server_env()
    server = RetouchProcess(data_dir, env).serve("--no-worker")
    api = Api(server.base, server.read_first_key())
    body = {"prompt": "x", "image_urls": [image_server.url("/square.png")], "resolution": "0.5K"}
    request_ids = [api.submit_ok({**body, "seed": n}) for n in range(3)]
    server.stop()

    restarted = RetouchProcess(data_dir, env, port=server.port).serve()
    try:
        assert restarted.process is not None and restarted.process.stdout is not None
        for request_id in request_ids:
            assert api.wait(request_id, timeout=90)["status"] == "succeeded"
    finally:
        restarted.stop()


def test_stopping_serve_mid_job_puts_the_job_back(
    data_dir: Path, image_server: ImageServer
) -> None:
    env = server_env()
    server = RetouchProcess(data_dir, env).serve()
    api = Api(server.base, server.read_first_key())
    request_id = api.submit_ok(
        {
            "prompt": "x",
            "image_urls": [image_server.url("/slow.png?seconds=2")],
            "resolution": "0.5K",
        }
    )
    api.wait_for_status(request_id, "in_progress", timeout=90)
    server.stop()
    # serve stops its worker before it exits: no worker of this data dir is left running.
    assert not worker_processes_of(data_dir)
    restarted = RetouchProcess(data_dir, env, port=server.port).serve()
    try:
        result = api.wait(request_id, timeout=90)
        assert result["status"] == "succeeded", result
    finally:
        restarted.stop()
