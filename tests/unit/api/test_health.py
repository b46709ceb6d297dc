"""GET /healthz and GET /readyz: without a key, in the OpenAPI document, and /readyz naming
the dependency that fails (the storage folder gone, the schema not this version's, PostgreSQL
unreachable) in a bounded time."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

import retouch.api.health as health
from retouch.jobs.database import newest_revision, writer

from ..databases import PostgresDatabases
from ..inprocess import InProcessServer, in_process_server
from ..tcp_proxy import TcpProxy, proxy_to

# A hang guard on a probe while a dependency is away: far above health.CHECK_SECONDS.
GUARD_SECONDS = 30


def probe(server: InProcessServer, path: str) -> httpx.Response:
    with httpx.Client(transport=server.transport, timeout=GUARD_SECONDS) as client:
        return client.get(f"{server.base}{path}")  # no key


def assert_not_ready(response: httpx.Response, *failed: str) -> str:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error_code"] == 503001
    message: str = body["error_message"]
    assert message.startswith("not ready: ")
    named = {part.split(":")[0] for part in message.removeprefix("not ready: ").split("; ")}
    assert named == set(failed), message
    return message


def test_healthz_answers_without_a_key(server: InProcessServer) -> None:
    response = probe(server, "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_answers_each_check_without_a_key(server: InProcessServer) -> None:
    response = probe(server, "/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "database": {"ok": True, "detail": f"answers, schema at revision {newest_revision()}"},
        "storage": {"ok": True, "detail": "reachable"},
    }


def test_both_are_documented_with_their_bodies_and_no_key(server: InProcessServer) -> None:
    with httpx.Client(transport=server.transport) as client:
        document = client.get(f"{server.base}/openapi.json").json()
    for path, body in (("/healthz", "Health"), ("/readyz", "Readiness")):
        operation = document["paths"][path]["get"]
        assert "security" not in operation, path
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{body}"}, path
    assert "503" in document["paths"]["/readyz"]["get"]["responses"]


def test_readyz_names_a_missing_storage_folder(tmp_path: Path) -> None:
    with in_process_server(tmp_path / "data", worker=False) as server:
        shutil.rmtree(server.settings.outputs_dir)
        assert_not_ready(probe(server, "/readyz"), "storage")
        assert probe(server, "/healthz").status_code == 200


def test_readyz_names_a_schema_of_another_revision(tmp_path: Path) -> None:
    with in_process_server(tmp_path / "data", worker=False) as server:
        engine = server.services.keys.engine
        with writer(engine).begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        message = assert_not_ready(probe(server, "/readyz"), "database")
        assert f"at revision 9999, this version needs {newest_revision()}" in message


def test_a_check_that_hangs_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounded by CHECK_SECONDS (shortened here), whatever the check does meanwhile."""
    monkeypatch.setattr(health, "CHECK_SECONDS", 0.01)
    gate = threading.Event()

    def hanging() -> str:
        gate.wait(GUARD_SECONDS)
        return "too late"

    check = health.BoundedCheck("hanging")
    try:
        result = asyncio.run(check.run(hanging))
    finally:
        gate.set()
    assert not result.ok
    assert result.detail == "no answer within 0.01 s"


@pytest.fixture
def proxied_postgres_url(postgres: PostgresDatabases) -> Iterator[tuple[str, TcpProxy]]:
    with proxy_to(direct := postgres.create()) as proxy:
        yield proxy.url_through(direct), proxy


def test_readyz_names_an_unreachable_postgres_and_healthz_still_answers(
    proxied_postgres_url: tuple[str, TcpProxy], tmp_path: Path
) -> None:
    url, proxy = proxied_postgres_url
    with in_process_server(tmp_path / "data", worker=False, database_url=url) as server:
        assert probe(server, "/readyz").status_code == 200
        proxy.cut()
        try:
            # Twice: the first finds the pooled connections dead, the second gets none.
            for _ in range(2):
                message = assert_not_ready(probe(server, "/readyz"), "database")
                assert "OperationalError" in message or "no answer within" in message, message
            assert probe(server, "/healthz").json() == {"status": "ok"}
        finally:
            proxy.restore()
        assert probe(server, "/readyz").status_code == 200
