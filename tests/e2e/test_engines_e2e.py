"""Several endpoints from a config file, 20 inputs on each engine, progress and logs while a
job runs, cancelling a running job (with the setting on), and the workers' health."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e_support import Api, ImageServer, RetouchProcess, running_server, server_env

# On SQLite only: the engines run in the worker whatever the job store.
pytestmark = pytest.mark.sqlite_only

CONFIG = """
[[endpoints]]
id = "google/nano-banana-2/edit"
engine = "flux2-klein"

[[endpoints]]
id = "black-forest-labs/flux-kontext-dev/edit"
engine = "flux1-kontext"
options = { steps = 2 }

[[endpoints]]
id = "qwen/qwen-image-edit-2511/edit"
engine = "qwen-image-edit"
options = { steps = 2 }
"""
ENDPOINTS = {
    "google/nano-banana-2/edit": "flux2-klein",
    "black-forest-labs/flux-kontext-dev/edit": "flux1-kontext",
    "qwen/qwen-image-edit-2511/edit": "qwen-image-edit",
}
PATHS = ["/square.png", "/wide.jpg", "/tall.webp", "/square-blue.png"]


@pytest.fixture(scope="module")
def engines_server(
    tmp_path_factory: pytest.TempPathFactory, models_cache: Path
) -> Iterator[RetouchProcess]:
    root = tmp_path_factory.mktemp("engines")
    (root / "retouch.toml").write_text(CONFIG)
    with running_server(
        root / "data",
        models_cache,
        RETOUCH_CONFIG=str(root / "retouch.toml"),
        RETOUCH_CANCEL_RUNNING="true",
    ) as server:
        yield server


@pytest.fixture(scope="module")
def engines_api(engines_server: RetouchProcess) -> Api:
    return engines_server.api()


def test_models_lists_every_endpoint_with_what_it_supports(engines_api: Api) -> None:
    import httpx

    models = httpx.get(f"{engines_api.base}/v1/models", headers=engines_api.headers).json()
    listed = {model["id"]: model for model in models["models"]}
    assert {endpoint: model["engine"] for endpoint, model in listed.items()} == ENDPOINTS
    for model in listed.values():
        assert model["preview"] is True
        assert model["supports"]["max_references"] >= 1


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_twenty_inputs_reach_every_engine(
    engines_api: Api, image_server: ImageServer, endpoint: str
) -> None:
    urls = [image_server.url(PATHS[n % len(PATHS)]) for n in range(20)]
    response = engines_api.submit(
        {"prompt": "put them all together", "image_urls": urls, "resolution": "0.5K"}, endpoint
    )
    assert response.status_code == 200, response.text
    result = engines_api.wait(response.json()["request_id"], timeout=240)
    assert result["status"] == "succeeded", result
    assert result["model"]["engine"] == ENDPOINTS[endpoint]
    plan = result["references"]
    assert plan["inputs"] == 20
    covered = sorted(index for sheet in plan["sheets"] for index in sheet["inputs"]) + list(
        plan["native"]
    )
    assert sorted(covered) == list(range(20))
    _, image = engines_api.download(result["output"]["image"])
    assert image.size == (512, 512)  # auto: the first input is square


def test_progress_and_logs_while_a_job_runs(engines_api: Api, image_server: ImageServer) -> None:
    request_id = engines_api.submit_ok(
        {
            "prompt": "x",
            "image_urls": [image_server.url("/square.png")],
            "resolution": "2K",
            "num_images": 2,
        }
    )
    seen: list[dict[str, float]] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = engines_api.status(request_id).json()
        if status["status"] == "completed":
            break
        if "progress" in status:
            seen.append(status["progress"])
        time.sleep(0.05)
    assert seen, "no progress was ever visible"
    assert all(p["total"] == 4 and 0 <= p["step"] <= 4 for p in seen)
    assert all(p["fraction"] == round(p["step"] / 4, 4) for p in seen)
    import httpx

    logs = httpx.get(
        f"{engines_api.base}/v1/requests/{request_id}/status?logs=1", headers=engines_api.headers
    ).json()["logs"]
    messages = [line["message"] for line in logs]
    assert messages[0].startswith("started by ")
    assert any(m.startswith("generating 2 image(s) at 2048×2048") for m in messages)
    assert all(line["time"].endswith("Z") and line["level"] for line in logs)


def test_a_running_job_can_be_cancelled_when_enabled(
    engines_api: Api, engines_server: RetouchProcess, image_server: ImageServer
) -> None:
    request_id = engines_api.submit_ok(
        {
            "prompt": "x",
            "image_urls": [image_server.url("/square.png")],
            "resolution": "2K",
            "num_images": 4,
        }
    )
    deadline = time.monotonic() + 120
    while "progress" not in engines_api.status(request_id).json():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    cancelled = engines_api.cancel(request_id).json()
    assert cancelled == {"request_id": request_id, "status": "cancelled", "outcome": "cancelled"}
    time.sleep(3)  # let the worker notice and stop
    result = engines_api.result(request_id).json()
    assert result["status"] == "cancelled" and "output" not in result
    assert engines_api.status(request_id).json()["status"] == "cancelled"
    outputs = engines_server.data_dir / "outputs" / request_id
    assert not outputs.exists() or not any(outputs.iterdir())
    # The worker is free again: the next job runs.
    follow = engines_api.submit_ok(
        {"prompt": "x", "image_urls": [image_server.url("/square.png")], "resolution": "0.5K"}
    )
    assert engines_api.wait(follow)["status"] == "succeeded"


def test_workers_report_their_memory(engines_api: Api) -> None:
    import httpx

    workers = httpx.get(f"{engines_api.base}/v1/workers", headers=engines_api.headers).json()
    assert len(workers["workers"]) == 1
    worker = workers["workers"][0]
    assert worker["memory"]["rss_mib"] > 0
    assert set(worker["endpoints"]) == set(ENDPOINTS)
    assert set(worker["engines"]) == set(ENDPOINTS)


def test_a_bad_config_file_stops_serve_with_a_clear_message(tmp_path: Path) -> None:
    import subprocess
    import sys

    for text, message in (
        ('[[endpoints]]\nid = "a/b/c"\nengine = "nope"\n', "unknown engine 'nope'"),
        ('[[endpoints]]\nid = "not an id"\nengine = "flux2-klein"\n', "endpoints.0.id"),
        ("[[endpoints]\n", "not valid TOML"),
        ('[[endpoints]]\nid = "a/b/c"\nengine = "flux2-klein"\ncolour = 1\n', "colour"),
    ):
        (tmp_path / "bad.toml").write_text(text)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "retouch",
                "serve",
                "--config",
                str(tmp_path / "bad.toml"),
                "--data-dir",
                str(tmp_path / "data"),
            ],
            capture_output=True,
            text=True,
            env=server_env(),
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert message in done.stderr


def test_4k_with_a_super_resolution_model(
    tmp_path: Path, models_cache: Path, image_server: ImageServer
) -> None:
    import importlib.util

    if importlib.util.find_spec("spandrel") is None:  # `make` installs it
        pytest.skip("spandrel is not installed")
    from unit.engine.test_upscale import tiny_compact_x2

    weights = tiny_compact_x2(tmp_path / "compact-x2.safetensors")
    with running_server(tmp_path / "data", models_cache, RETOUCH_UPSCALER=str(weights)) as server:
        api = server.api()
        result = api.wait(
            api.submit_ok(
                {
                    "prompt": "x",
                    "image_urls": [image_server.url("/square.png")],
                    "resolution": "4K",
                    "aspect_ratio": "16:9",
                    "output_format": "jpeg",
                }
            ),
            timeout=300,
        )
        assert result["status"] == "succeeded", result
        assert result["generation"]["resize"].startswith("spandrel:")
        assert "compact-x2.safetensors" in result["generation"]["resize"]
        assert any("upscaled to 5504×3072 with spandrel:" in w for w in result["warnings"])
        _, image = api.download(result["output"]["image"])
        assert image.size == (5504, 3072)
