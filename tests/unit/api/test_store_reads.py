"""The API reads a local store on its event loop and a network store on a thread."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from retouch.api.dependencies import store_read


@pytest.mark.parametrize(("local", "on_loop_thread"), [(True, True), (False, False)])
def test_where_a_read_runs(local: bool, on_loop_thread: bool) -> None:
    state: Any = SimpleNamespace(store=SimpleNamespace(local_reads=local))

    async def read_thread() -> threading.Thread:
        return await store_read(state, threading.current_thread)

    assert (asyncio.run(read_thread()) is threading.current_thread()) is on_loop_thread


def test_a_failed_read_raises_in_the_caller() -> None:
    state: Any = SimpleNamespace(store=SimpleNamespace(local_reads=False))

    def broken() -> None:
        raise LookupError("gone")

    with pytest.raises(LookupError, match="gone"):
        asyncio.run(store_read(state, broken))
