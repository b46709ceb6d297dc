"""What `retouch serve` hands its worker child: the command line and the environment (the
child itself runs in the end-to-end tier)."""

from __future__ import annotations

from pathlib import Path

import pytest

from retouch.config import Settings
from retouch.worker.supervisor import WorkerSupervisor, worker_command, worker_environment

POSTGRES_URL = "postgresql+psycopg://retouch:s3cret@db.internal:5432/retouch"


def settings(**fields: object) -> Settings:
    return Settings.model_validate(fields)


def test_the_worker_gets_serves_data_dir_model_device_and_config(tmp_path: Path) -> None:
    command = worker_command(
        settings(
            data_dir=tmp_path,
            model="/models/klein",
            device="cuda:1",
            config=tmp_path / "endpoints.toml",
        )
    )
    assert command[1:4] == ["-m", "retouch", "worker"]
    assert command[4:] == [
        "--data-dir",
        str(tmp_path),
        "--model",
        "/models/klein",
        "--device",
        "cuda:1",
        "--config",
        str(tmp_path / "endpoints.toml"),
    ]


def test_the_database_url_reaches_the_worker_in_its_environment_not_its_command(
    tmp_path: Path,
) -> None:
    configured = settings(data_dir=tmp_path, database_url=POSTGRES_URL)
    # Set from the settings even where the inherited environment has another (a flag's).
    environment = worker_environment(configured, {"RETOUCH_DATABASE_URL": "sqlite:///other.db"})
    assert environment["RETOUCH_DATABASE_URL"] == POSTGRES_URL
    assert not any("s3cret" in argument for argument in worker_command(configured))


def test_without_a_database_url_the_environment_is_inherited_as_it_is(tmp_path: Path) -> None:
    inherited = {"PATH": "/usr/bin", "RETOUCH_LEASE_SECONDS": "5"}
    assert worker_environment(settings(data_dir=tmp_path), inherited) == inherited


def test_the_storage_and_s3_variables_reach_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    variables = {
        "RETOUCH_STORAGE_URL": "s3://bucket/retouch",
        "RETOUCH_S3_ENDPOINT_URL": "http://minio:9000",
        "RETOUCH_S3_REGION": "eu-west-1",
        "RETOUCH_S3_PRESIGN": "true",
        "AWS_ACCESS_KEY_ID": "id",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "RETOUCH_SIGNING_SECRET": "ab" * 32,
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    supervisor = WorkerSupervisor(settings(data_dir=tmp_path, database_url=POSTGRES_URL))
    expected = {**variables, "RETOUCH_DATABASE_URL": POSTGRES_URL}
    assert supervisor.environment.items() >= expected.items()
