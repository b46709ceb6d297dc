"""Files of attempts that did not win are removed: a job retried after its worker died
mid-way keeps only the files its result lists; one cancelled in a later attempt keeps none;
and neither does one the reaper gave up (worker_lost) or one cancelled while queued after a
killed attempt, on the local folder and on S3 (moto)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ..inprocess import SQUARE_PNG, InProcessServer, in_process_server
from ..moto_s3 import REGION, MotoS3, moto_s3

BODY = {"prompt": "x", "image_urls": ["data:image/png;base64," + SQUARE_PNG]}


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    """No worker thread: the test runs the worker's loop itself, one job at a time."""
    data_dir = tmp_path_factory.mktemp("attempts")
    with in_process_server(data_dir, worker=False, cancel_running=True) as server:
        yield server


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoS3]:
    with moto_s3() as server:
        yield server


@pytest.fixture(scope="module", params=["local", "s3"])
def two_attempts(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessServer]:
    """No worker thread, and a job is given up after two attempts, on each storage."""
    storage: dict[str, Any] = {}
    if request.param == "s3":
        moto: MotoS3 = request.getfixturevalue("moto")
        storage = {
            "storage_url": f"s3://{moto.new_bucket()}/retouch",
            "s3_endpoint_url": moto.endpoint_url,
            "s3_region": REGION,
        }
    data_dir = tmp_path_factory.mktemp(f"two-attempts-{request.param}")
    with in_process_server(data_dir, worker=False, max_attempts=2, **storage) as server:
        yield server


def still_stored(server: InProcessServer, job_id: str, names: list[str]) -> list[str]:
    return [name for name in names if server.services.storage.stat(f"{job_id}/{name}")]


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


def test_a_job_the_reaper_gives_up_keeps_no_files(two_attempts: InProcessServer) -> None:
    api = two_attempts.api()
    job_id = api.submit_ok(BODY)
    dead = die_after_storing(two_attempts, job_id) + die_after_storing(two_attempts, job_id)
    assert still_stored(two_attempts, job_id, dead) == dead
    # The worker's reaper gives the job up (worker_lost), and removes what its attempts left.
    assert not two_attempts.worker.run_once()
    result = api.wait(job_id)
    assert result["status"] == "failed" and "worker_lost" in str(result), result
    assert still_stored(two_attempts, job_id, dead) == []


def test_a_job_cancelled_while_queued_after_a_killed_attempt_keeps_no_files(
    two_attempts: InProcessServer,
) -> None:
    api = two_attempts.api()
    job_id = api.submit_ok(BODY)
    dead = die_after_storing(two_attempts, job_id)
    assert two_attempts.services.store.reap_expired().requeued == (job_id,)
    assert still_stored(two_attempts, job_id, dead) == dead
    assert api.cancel(job_id).json()["outcome"] == "cancelled"
    assert still_stored(two_attempts, job_id, dead) == []
