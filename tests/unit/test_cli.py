"""`retouch serve --api-processes N` in-process, with uvicorn and the worker supervisor
replaced by recorders: the number checked, the import-string app handed to uvicorn, the flags
handed to the API processes, and the worker stopped once uvicorn's parent returns. The real
processes run in tests/e2e/test_scale_out.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner, Result

from retouch.api.asgi import FACTORY
from retouch.cli import app
from retouch.config import Settings
from retouch.worker import supervisor

FLAGS = ["host", "port", "data_dir", "database_url", "model", "device", "config", "api_processes"]


class Recorded:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.uvicorn_calls: list[tuple[Any, dict[str, Any]]] = []
        self.uvicorn_error: BaseException | None = None
        self.log_formats: list[str] = []


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorded]:
    record = Recorded()

    class RecordingSupervisor:
        def __init__(self, settings: Settings) -> None:
            pass

        def start(self) -> None:
            record.events.append("worker started")

        def stop(self) -> None:
            record.events.append("worker stopped")

    def run(app_: Any, **options: Any) -> None:
        record.events.append("uvicorn")
        record.uvicorn_calls.append((app_, options))
        if record.uvicorn_error is not None:
            raise record.uvicorn_error

    monkeypatch.setattr(supervisor, "WorkerSupervisor", RecordingSupervisor)
    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setattr("retouch.cli.configure_logging", record.log_formats.append)
    # serve exports its flags into os.environ: restored at the end of the test.
    for name in FLAGS:
        monkeypatch.delenv(f"RETOUCH_{name.upper()}", raising=False)
    yield record


def serve(*arguments: str, **environment: str) -> Result:
    return CliRunner().invoke(app, ["serve", *arguments], env=environment)


@pytest.mark.parametrize(
    ("arguments", "environment", "named"),
    [
        (["--api-processes", "0"], {}, "--api-processes"),
        ([], {"RETOUCH_API_PROCESSES": "0"}, "RETOUCH_API_PROCESSES"),
        ([], {"RETOUCH_API_PROCESSES": "two"}, "RETOUCH_API_PROCESSES"),
    ],
)
def test_a_number_of_api_processes_below_one_is_refused(
    recorded: Recorded,
    tmp_path: Path,
    arguments: list[str],
    environment: dict[str, str],
    named: str,
) -> None:
    result = serve("--data-dir", str(tmp_path), *arguments, **environment)
    assert result.exit_code == 2, result.output
    assert f"configuration error: {named}:" in result.output
    assert recorded.events == []


def test_several_api_processes_run_the_factory_and_the_parent_stops_the_worker(
    recorded: Recorded, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    result = serve("--data-dir", str(data_dir), "--port", "8123", "--api-processes", "3")
    assert result.exit_code == 0, result.output
    assert "3 API processes" in result.output
    assert recorded.events == ["worker started", "uvicorn", "worker stopped"]
    [(served, options)] = recorded.uvicorn_calls
    assert served == FACTORY
    assert options["factory"] is True and options["workers"] == 3 and options["port"] == 8123
    # The API processes build their settings from the environment, flags included.
    assert os.environ["RETOUCH_DATA_DIR"] == str(data_dir)
    assert os.environ["RETOUCH_PORT"] == "8123"


def test_the_worker_is_stopped_when_uvicorns_parent_fails(
    recorded: Recorded, tmp_path: Path
) -> None:
    recorded.uvicorn_error = SystemExit(1)  # as uvicorn exits when the port is taken
    result = serve("--data-dir", str(tmp_path), "--api-processes", "2")
    assert result.exit_code == 1
    assert recorded.events == ["worker started", "uvicorn", "worker stopped"]


def test_one_api_process_runs_the_app_in_process_and_stops_the_worker_on_shutdown(
    recorded: Recorded, tmp_path: Path
) -> None:
    result = serve("--data-dir", str(tmp_path), "--api-processes", "1")
    assert result.exit_code == 0, result.output
    [(served, options)] = recorded.uvicorn_calls
    assert not isinstance(served, str) and "workers" not in options
    # A single server re-raises SIGTERM once it has stopped: serve takes it as a
    # KeyboardInterrupt (caught by uvicorn.run), then drains the worker after uvicorn.run.
    assert recorded.events == ["worker started", "uvicorn", "worker stopped"]


def test_no_worker_runs_the_api_processes_alone(recorded: Recorded, tmp_path: Path) -> None:
    result = serve("--data-dir", str(tmp_path), "--api-processes", "2", "--no-worker")
    assert result.exit_code == 0, result.output
    assert recorded.events == ["uvicorn"]


def test_serve_logs_in_the_configured_format_through_one_handler(
    recorded: Recorded, tmp_path: Path
) -> None:
    result = serve("--data-dir", str(tmp_path), "--api-processes", "2", RETOUCH_LOG_FORMAT="json")
    assert result.exit_code == 0, result.output
    assert recorded.log_formats == ["json"]
    [(_, options)] = recorded.uvicorn_calls
    # uvicorn configures no handlers of its own: its lines go through ours, JSON too.
    assert options["log_config"] is None and options["access_log"] is False
