"""The unit tier's server: the API in-process and the worker in a thread, with a fake engine
(see inprocess.py). One is shared by the tests that do not need a data dir of their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from e2e_support import Api

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
