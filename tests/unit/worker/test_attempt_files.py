"""Files of attempts that did not win are removed: a job retried after its worker died
mid-way keeps only the files its result lists, and one cancelled in a later attempt keeps
none (on the local folder; tests/unit/storage checks the operations on both backends)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from ..inprocess import SQUARE_PNG, InProcessServer, in_process_server


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    """No worker thread: the test runs the worker's loop itself, one job at a time."""
    data_dir = tmp_path_factory.mktemp("attempts")
    with in_process_server(data_dir, worker=False, cancel_running=True) as server:
        yield server


def job_files(server: InProcessServer, job_id: str) -> list[str]:
    folder = server.settings.outputs_dir / job_id
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


def die_after_storing(server: InProcessServer, job_id: str) -> list[str]:
    """An attempt that claims the job, stores its file and is killed before finishing."""
    claim = server.services.store.claim(worker_id="killed", lease_seconds=0.01)
    assert claim is not None and claim.job.id == job_id
    name = f"{job_id}/0-{claim.lease_token[:8]}.png"
    server.services.storage.put(name, b"left by a killed attempt")
    time.sleep(0.05)  # its lease expires; the next claim reaps it
    return [name.rpartition("/")[2]]


def test_a_retried_job_keeps_only_its_results_files(idle: InProcessServer) -> None:
    api = idle.api()
    body = {"prompt": "x", "image_urls": ["data:image/png;base64," + SQUARE_PNG]}
    job_id = api.submit_ok({**body, "num_images": 2})
    dead = die_after_storing(idle, job_id)
    assert idle.worker.run_once()
    result = api.wait(job_id)
    assert result["status"] == "succeeded", result
    kept = job_files(idle, job_id)
    assert len(kept) == 2 and not set(dead) & set(kept)


def test_a_job_cancelled_in_a_later_attempt_keeps_no_files(idle: InProcessServer) -> None:
    api = idle.api()
    prompt, gate = idle.engine.hold()
    job_id = api.submit_ok(
        {"prompt": prompt, "image_urls": ["data:image/png;base64," + SQUARE_PNG]}
    )
    die_after_storing(idle, job_id)
    runner = threading.Thread(target=idle.worker.run_once)
    runner.start()
    try:
        api.wait_for_status(job_id, "in_progress")
        assert api.cancel(job_id).status_code == 202
    finally:
        runner.join(30)
        gate.set()
    assert api.wait(job_id)["status"] == "cancelled"
    assert job_files(idle, job_id) == []
