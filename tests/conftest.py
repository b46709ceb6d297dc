from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e_support import ImageServer, start_image_server


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
