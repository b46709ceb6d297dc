"""Choosing the database: RETOUCH_DATABASE_URL, `--database-url`, and `retouch migrate`."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from alembic.migration import MigrationContext
from sqlalchemy import create_engine
from typer.testing import CliRunner

from retouch.cli import app
from retouch.config import Settings
from retouch.jobs.database import DatabaseUrlError, newest_revision
from retouch.jobs.open_store import open_store
from retouch.jobs.sql_store import SqlJobStore
from retouch.services import open_services

from ..inprocess import SQUARE_PNG, in_process_server


@pytest.mark.parametrize(
    "url",
    [
        "mysql://retouch:s3cret@db/retouch",
        "postgresql://retouch:s3cret@db/retouch",  # psycopg2's scheme: not what we ship
        "sqlite://",  # in memory: every process would see its own database
        "not a url",
    ],
)
def test_other_urls_are_refused_naming_the_variable(url: str) -> None:
    with pytest.raises(DatabaseUrlError, match="RETOUCH_DATABASE_URL") as refused:
        open_store(url, max_attempts=3, webhook_retry_seconds=60.0)
    assert "s3cret" not in str(refused.value)


def test_the_url_comes_from_the_environment_else_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def store_url() -> str:
        return Settings.model_validate({"data_dir": tmp_path}).store_url

    monkeypatch.delenv("RETOUCH_DATABASE_URL", raising=False)
    assert store_url() == f"sqlite:///{tmp_path / 'retouch.db'}"
    monkeypatch.setenv("RETOUCH_DATABASE_URL", "sqlite:///elsewhere.db")
    assert store_url() == "sqlite:///elsewhere.db"
    monkeypatch.setenv("RETOUCH_DATABASE_URL", "")
    assert store_url() == f"sqlite:///{tmp_path / 'retouch.db'}"


def test_migrate_then_keys_on_either_backend(
    unmigrated_database_url: str, tmp_path: Path, backend: str
) -> None:
    runner = CliRunner()
    options = ["--database-url", unmigrated_database_url, "--data-dir", str(tmp_path / "data")]
    migrated = runner.invoke(app, ["migrate", *options])
    assert migrated.exit_code == 0, migrated.output
    engine = create_engine(unmigrated_database_url)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_heads() == (newest_revision(),)
    engine.dispose()
    created = runner.invoke(app, ["keys", "create", "--name", "ops", *options])
    assert created.exit_code == 0, created.output
    services = open_services(
        Settings.model_validate(
            {"data_dir": tmp_path / "data", "database_url": unmigrated_database_url}
        )
    )
    assert services.keys.engine.dialect.name == backend
    assert [key.name for key in services.keys.list_keys()] == ["ops"]
    services.close()


def test_a_bad_url_on_the_command_line_exits_with_a_message(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["keys", "list", "--database-url", "mysql://h/db", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "RETOUCH_DATABASE_URL" in result.output


def test_a_job_runs_end_to_end_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    """The API and a worker on PostgreSQL: submit, progress, finish, and a replayed submit."""
    with in_process_server(tmp_path / "data", database_url=postgres_url) as server:
        api = server.api()
        body = {"prompt": "a red square", "image_urls": ["data:image/png;base64," + SQUARE_PNG]}
        request_id = api.submit_ok(body)
        assert api.wait(request_id, timeout=60)["status"] == "succeeded"

        def submit_once() -> httpx.Response:
            url = f"{api.base}/v1/models/google/nano-banana-2/edit"
            headers = {**api.headers, "Idempotency-Key": "once"}
            return api.http.post(url, json=body, headers=headers, timeout=30)

        first, again = submit_once(), submit_once()
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json()["request_id"] == first.json()["request_id"]


def test_the_postgres_pool_is_sized_by_the_settings(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETOUCH_DATABASE_POOL_SIZE", "3")
    monkeypatch.setenv("RETOUCH_DATABASE_POOL_OVERFLOW", "2")
    options: dict[str, object] = {"data_dir": tmp_path, "database_url": postgres_url}
    services = open_services(Settings(**options))  # type: ignore[arg-type]
    try:
        store = services.store
        assert isinstance(store, SqlJobStore)
        pool = store.engine.pool
        assert (pool.size(), pool._max_overflow) == (3, 2)  # type: ignore[attr-defined]
    finally:
        services.close()
