from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e_support import (
    Api,
    ImageServer,
    RetouchProcess,
    running_server,
    seed_data_dir,
    start_image_server,
)


@pytest.fixture(scope="session")
def models_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every engine's preview model, built once for every server of the session."""
    from retouch.engine.registry import ENGINE_KINDS, preview_dirname

    cache = tmp_path_factory.mktemp("models")
    for kind, engine_class in ENGINE_KINDS.items():
        engine_class.load_preview(cache / preview_dirname(kind))
    return cache


@pytest.fixture(scope="session")
def image_server() -> Iterator[ImageServer]:
    server = start_image_server()
    yield server
    server.server.shutdown()


@pytest.fixture
def data_dir(tmp_path: Path, models_cache: Path) -> Path:
    path = tmp_path / "data"
    seed_data_dir(path, models_cache)
    return path


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, models_cache: Path
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
