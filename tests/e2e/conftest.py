"""The end-to-end tier: real `retouch serve`/`retouch worker` processes. Every test here is
marked `e2e` (`make unit-fast` skips them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import e2e_support
from e2e_support import Api, RetouchProcess, running_server, seed_data_dir
from unit.databases import BACKENDS, postgres_or_skip

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks every test here e2e, and drops the PostgreSQL run of those marked sqlite_only
    (what they prove does not pass through the job store: TLS, a client's protocol)."""
    dropped = []
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)
        params = getattr(item, "callspec", None)
        backend = params.params.get("backend") if params is not None else None
        if item.get_closest_marker("sqlite_only") and backend == "postgresql":
            dropped.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        gone = {id(item) for item in dropped}
        items[:] = [item for item in items if id(item) not in gone]


@pytest.fixture(scope="session", params=BACKENDS, autouse=True)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every end-to-end test runs on both job stores: its processes on SQLite files in their
    data dirs, then on PostgreSQL (a new database per data dir, dropped at the end)."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    databases = postgres_or_skip()
    e2e_support.new_database = databases.create
    try:
        yield "postgresql"
    finally:
        e2e_support.new_database = None
        e2e_support.forget_databases()
        databases.drop_created()


@pytest.fixture
def data_dir(tmp_path: Path, models_cache: Path) -> Path:
    path = tmp_path / "data"
    seed_data_dir(path, models_cache)
    return path


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, models_cache: Path, backend: str
) -> Iterator[RetouchProcess]:
    """One `retouch serve` with its worker, shared by the tests that do not restart it."""
    with running_server(tmp_path_factory.mktemp("shared") / "data", models_cache) as process:
        yield process


@pytest.fixture(scope="session")
def api(server: RetouchProcess) -> Api:
    return server.api()


@pytest.fixture(scope="session")
def second_api(server: RetouchProcess) -> Api:
    """Another API key on the shared server: its requests are not the first key's."""
    key = server.cli("keys", "create", "--name", "second").strip().splitlines()[-1]
    return Api(server.base, key)
