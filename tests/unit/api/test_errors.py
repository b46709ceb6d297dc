"""The exception handlers for database errors: one that says the database cannot answer now
is a 503001 with Retry-After, whichever route raised it; any other stays a 500 (a bug). The
real outages, through the whole app, are in tests/unit/jobs/test_database_outage.py."""

from __future__ import annotations

import sqlite3

import pytest
from fastapi import FastAPI
from sqlalchemy import exc
from starlette.testclient import TestClient

from retouch.api.errors import DATABASE_RETRY_AFTER_SECONDS, error_responses, install_error_handlers


def _sqlite_error(message: str, code: int) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code  # set by sqlite3 itself on the errors it raises
    return error


ERRORS: dict[str, Exception] = {
    "unreachable": exc.OperationalError(
        "SELECT 1", {}, Exception("connection failed: connection refused")
    ),
    "dropped": exc.DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True),
    "pool": exc.TimeoutError("QueuePool limit of size 10 overflow 30 reached"),
    "locked": exc.OperationalError(
        "BEGIN IMMEDIATE", {}, _sqlite_error("database is locked", sqlite3.SQLITE_BUSY)
    ),
    "no table": exc.OperationalError(
        "SELECT * FROM t", {}, _sqlite_error("no such table: t", sqlite3.SQLITE_ERROR)
    ),
    "integrity": exc.IntegrityError("INSERT", {}, Exception("duplicate key")),
}


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/raise/{name}")
    async def raising(name: str) -> None:
        raise ERRORS[name]

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("unreachable", "unreachable"),
        ("dropped", "unreachable"),
        ("pool", "busy"),
        ("locked", "busy"),
    ],
)
def test_an_unanswering_database_is_a_503(client: TestClient, name: str, state: str) -> None:
    response = client.get(f"/raise/{name}")
    assert response.status_code == 503
    assert response.json() == {
        "error_code": 503001,
        "error_message": f"the job database is {state}: retry in a few seconds",
    }
    assert response.headers["Retry-After"] == str(DATABASE_RETRY_AFTER_SECONDS)


@pytest.mark.parametrize("name", ["no table", "integrity"])
def test_other_database_errors_stay_internal(client: TestClient, name: str) -> None:
    response = client.get(f"/raise/{name}")
    assert response.status_code == 500
    assert response.json()["error_code"] == 500001


def test_every_route_declares_the_503() -> None:
    assert set(error_responses(401)) == {401, 500, 503}
