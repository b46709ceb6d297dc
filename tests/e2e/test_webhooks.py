"""Webhooks against `retouch serve`: a delivery that keeps failing is retried after a restart
(see unit/api/test_webhooks.py for the rest, in-process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from e2e_support import RetouchProcess, seed_data_dir, server_env
from webhook_receiver import (
    QUICK_RETRIES,
    cancelled_with_webhook,
    codes,
    secret,
    wait_for_webhook,
    webhook_receiver,
)

QUICK_RETRY_ENV = {f"RETOUCH_{name.upper()}": str(value) for name, value in QUICK_RETRIES.items()}


@pytest.fixture
def api_only(tmp_path: Path, models_cache: Path) -> Iterator[Callable[..., RetouchProcess]]:
    """Starts `retouch serve --no-worker` on one data dir: up in a second or two (its jobs end
    by being cancelled, which sends their webhooks like any other ending). A later start is a
    restart: same port (the base of the job's URLs), same key. All are stopped at the end."""
    data_dir = tmp_path / "data"
    seed_data_dir(data_dir, models_cache)
    started: list[RetouchProcess] = []

    def start(**env: str) -> RetouchProcess:
        server = RetouchProcess(data_dir, server_env(**env))
        if started:
            server.port, server.key = started[0].port, started[0].key
        started.append(server.serve("--no-worker"))
        if server.key is None:
            server.read_first_key()
        return server

    yield start
    for server in started:
        server.stop()


def test_delivery_survives_a_restart_mid_retry(api_only: Callable[..., RetouchProcess]) -> None:
    server = api_only(**QUICK_RETRY_ENV)
    api = server.api()
    with webhook_receiver(secret(api)) as receiver:
        receiver.answers[:] = [500] * 1_000_000  # failing until told otherwise
        request_id = cancelled_with_webhook(api, receiver.url)
        failing = wait_for_webhook(api, request_id, lambda w: len(w["attempts"]) >= 2)
        assert failing["state"] == "pending"
        server.stop()
        failed_before = len(receiver.received)
        receiver.answers.clear()  # accepting from now on
        again = api_only(**QUICK_RETRY_ENV)
        receiver.wait_for(lambda got: any(r.status == 200 for r in got))
        webhook = wait_for_webhook(again.api(), request_id, lambda w: w["state"] != "pending")
    delivered = receiver.received[-1]
    assert delivered.status == 200 and delivered.verified is not None
    assert delivered.verified["request_id"] == request_id
    assert delivered.verified["status"] == "cancelled"
    assert [r.status for r in receiver.received[:failed_before]] == [500] * failed_before
    assert {r.headers["webhook-id"] for r in receiver.received} == {f"msg_{request_id}"}
    assert all(r.verified is not None for r in receiver.received)
    assert webhook["state"] == "delivered"
    assert codes(webhook)[-1] == 200 and codes(webhook).count(500) >= 2
    # An attempt cut short by the stop is listed too (no status, an "interrupted" error).
    assert set(codes(webhook)[:-1]) <= {500, None}
