"""A worker with batch_max > 1 claims up to that many queued jobs of one endpoint and runs
them through one engine call, and each job still ends on its own: succeeded, failed,
cancelled or put back in the queue."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e_support import Api
from retouch.config import Settings
from retouch.engine.base import CancelCheck, EditRequest, StepCallback
from retouch.engine.flux1_kontext import FluxKontextEngine
from retouch.engine.flux2_klein import Flux2KleinEngine
from retouch.engine.options import EngineOptions
from retouch.engine.qwen_image_edit import QwenImageEditEngine
from retouch.served_endpoints import load_endpoints

from ..inprocess import SQUARE_PNG, FakeEngine, InProcessServer, in_process_server

IMAGE = "data:image/png;base64," + SQUARE_PNG


def body(prompt: str, **fields: Any) -> dict[str, Any]:
    return {"prompt": prompt, "image_urls": [IMAGE], **fields}


@pytest.fixture
def idle(tmp_path: Path) -> Iterator[InProcessServer]:
    """No worker thread (the test runs its loop), batches of up to 4, running jobs cancellable."""
    with in_process_server(tmp_path, worker=False, batch_max=4, cancel_running=True) as server:
        yield server


def submit(api: Api, *prompts: str, **fields: Any) -> list[str]:
    return [api.submit_ok(body(prompt, **fields)) for prompt in prompts]


def outcome(api: Api, job_id: str) -> dict[str, Any]:
    result: dict[str, Any] = api.wait(job_id)
    return result


def test_queued_jobs_run_as_one_batch_and_each_succeeds_alone(idle: InProcessServer) -> None:
    api = idle.api()
    jobs = submit(api, "one", "two", "three", "four", "five")
    assert idle.worker.run_once()
    assert idle.engine.batches == [["one", "two", "three", "four"]]  # batch_max is 4
    assert idle.worker.run_once()
    assert idle.engine.batches[1] == ["five"]
    results = [outcome(api, job) for job in jobs]
    assert [result["status"] for result in results] == ["succeeded"] * 5
    # Each job has its own images: the fake engine paints a colour per prompt.
    urls = [result["output"]["images"][0] for result in results]
    assert len({api.http.get(url).content for url in urls}) == 5
    logs = api.http.get(f"{api.base}/v1/requests/{jobs[0]}/status?logs=1", headers=api.headers)
    assert "running in a batch of 4 jobs" in logs.text


def test_one_jobs_bad_input_fails_it_alone(idle: InProcessServer) -> None:
    api = idle.api()
    good = submit(api, "good")
    bad = api.submit_ok({"prompt": "bad", "image_urls": ["data:image/png;base64,bm90IGFuIGltYWdl"]})
    also_good = submit(api, "also good")
    assert idle.worker.run_once()
    assert idle.engine.batches == [["good", "also good"]]
    assert outcome(api, bad)["status"] == "failed"
    assert "image_urls[0]" in str(outcome(api, bad))
    assert [outcome(api, job)["status"] for job in good + also_good] == ["succeeded"] * 2


def test_a_failed_batch_runs_each_job_alone_so_only_the_culprit_fails(
    idle: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = idle.engine
    plain_edit = FakeEngine.edit

    def edit(
        self: FakeEngine,
        request: EditRequest,
        on_step: StepCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> Any:
        if request.prompt == "too big":
            raise RuntimeError("CUDA out of memory")
        return plain_edit(self, request, on_step, should_cancel)

    monkeypatch.setattr(FakeEngine, "edit", edit)
    api = idle.api()
    jobs = submit(api, "fine", "too big", "fine too")
    assert idle.worker.run_once()
    assert engine.batches == [["fine", "too big", "fine too"]]
    statuses = [outcome(api, job)["status"] for job in jobs]
    assert statuses == ["succeeded", "failed", "succeeded"]
    assert "CUDA out of memory" in str(outcome(api, jobs[1]))


def run_in_thread(server: InProcessServer) -> threading.Thread:
    thread = threading.Thread(target=server.worker.run_once)
    thread.start()
    return thread


def test_a_job_cancelled_in_a_batch_ends_cancelled_and_the_others_finish(
    idle: InProcessServer,
) -> None:
    api = idle.api()
    held, gate = idle.engine.hold()
    jobs = submit(api, held, "neighbour")
    runner = run_in_thread(idle)
    try:
        api.wait_for_status(jobs[1], "in_progress")  # both claimed
        assert api.cancel(jobs[0]).status_code == 202
    finally:
        gate.set()
        runner.join(30)
    assert outcome(api, jobs[0])["status"] == "cancelled"
    assert outcome(api, jobs[1])["status"] == "succeeded"
    assert not (idle.settings.outputs_dir / jobs[0]).exists()


def test_a_stopping_worker_puts_the_whole_batch_back(idle: InProcessServer) -> None:
    api = idle.api()
    held, gate = idle.engine.hold()
    jobs = submit(api, held, "second", "third")
    runner = run_in_thread(idle)
    try:
        api.wait_for_status(jobs[2], "in_progress")
        idle.worker.stop()
        runner.join(30)
    finally:
        gate.set()
    assert not runner.is_alive()
    assert [api.status(job).json()["status"] for job in jobs] == ["in_queue"] * 3


def test_batch_max_1_runs_one_job_at_a_time(tmp_path: Path) -> None:
    with in_process_server(tmp_path, worker=False) as server:
        api = server.api()
        submit(api, "a", "b")
        assert server.worker.run_once() and server.worker.run_once()
        assert server.engine.batches == [["a"], ["b"]]


def test_batch_max_reaches_the_endpoints_options(tmp_path: Path) -> None:
    settings = Settings.model_validate({"data_dir": tmp_path, "batch_max": 8})
    assert {endpoint.options.batch_max for endpoint in load_endpoints(settings)} == {8}
    config = tmp_path / "endpoints.toml"
    config.write_text(
        '[[endpoints]]\nid = "a/b"\nengine = "flux2-klein"\noptions = { batch_max = 16 }\n'
    )
    (endpoint,) = load_endpoints(Settings.model_validate({"data_dir": tmp_path, "config": config}))
    assert endpoint.options.batch_max == 16


@pytest.mark.parametrize("engine_class", [FluxKontextEngine, QwenImageEditEngine])
def test_engines_that_run_one_request_at_a_time_refuse_batch_max(engine_class: Any) -> None:
    with pytest.raises(ValueError, match=r"batch_max: the .* engine runs one request at a time"):
        engine_class.check_batching(EngineOptions(batch_max=2))
    engine_class.check_batching(EngineOptions(batch_max=1))
    Flux2KleinEngine.check_batching(EngineOptions(batch_max=16))
