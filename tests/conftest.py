from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e_support import (
    Api,
    ImageServer,
    RetouchProcess,
    seed_data_dir,
    server_env,
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
    data_dir = tmp_path_factory.mktemp("shared") / "data"
    seed_data_dir(data_dir, models_cache)
    process = RetouchProcess(data_dir, server_env()).serve()
    process.read_first_key()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def api(server: RetouchProcess) -> Api:
    assert server.key is not None
    return Api(server.base, server.key)
