"""The unit tier's server: the API in-process and the worker in a thread, with a fake engine
(see inprocess.py). One is shared by the tests that do not need a data dir of their own.
And the databases of the store-level tests, on both backends (see databases.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e_support import Api
from retouch.jobs.database import migrate, open_engine
from retouch.jobs.sql_store import SqlJobStore

from .databases import BACKENDS, PostgresDatabases, empty_tables, open_at, postgres_or_skip
from .inprocess import InProcessServer, in_process_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    with in_process_server(tmp_path_factory.mktemp("in-process") / "data") as running:
        yield running


@pytest.fixture(scope="session")
def api(server: InProcessServer) -> Api:
    return server.api()


@pytest.fixture(scope="session")
def second_api(server: InProcessServer) -> Api:
    """Another API key on the shared server: its requests are not the first key's."""
    return server.api(server.new_key("second"))


# --- databases for the store-level tests (see databases.py) ------------------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabases]:
    databases = postgres_or_skip()
    yield databases
    databases.drop_created()


@pytest.fixture(scope="session")
def migrated_postgres_url(postgres: PostgresDatabases) -> str:
    """The session's database, migrated once."""
    url = postgres.create()
    engine = open_engine(url)
    migrate(engine)
    engine.dispose()
    return url


@pytest.fixture
def postgres_url(migrated_postgres_url: str) -> str:
    """The session's PostgreSQL database, migrated, with every table empty."""
    empty_tables(migrated_postgres_url)
    return migrated_postgres_url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of each backend, empty: a new SQLite file, or the session's PostgreSQL
    database with its tables emptied (migrated on both once a store opens it)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(database_url: str) -> Iterator[SqlJobStore]:
    """A store on each backend's empty database."""
    opened = open_at(database_url)
    yield opened
    opened.close()


@pytest.fixture
def unmigrated_database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of each backend with no tables at all."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    databases: PostgresDatabases = request.getfixturevalue("postgres")
    return databases.create()
