"""A yardstick for the cost of a Retouch status poll: the smallest FastAPI app that does the same
work, on the same database and the same uvicorn settings as `retouch serve`.

GET /v1/requests/{request_id}/status, per request: the bearer key's SHA-256 looked up in
`api_keys` (no cache), one indexed read of the job's row in `jobs`, and a JSON body of the
status body's fields (request_id, status, progress, status_url, result_url). No queue
position: poll a running job, so that Retouch does no count either. The reads run on the event
loop on SQLite and in the thread pool on PostgreSQL (a pool of 10 connections), as Retouch's do.

    .venv/bin/python bench/reference_app.py --port 8100 --database-url sqlite:///PATH
"""

from __future__ import annotations

import argparse
import hashlib
import json
import queue
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from sqlalchemy import make_url
from starlette.concurrency import run_in_threadpool

STATUS_NAMES = {
    "queued": "in_queue",
    "running": "in_progress",
    "succeeded": "completed",
    "failed": "completed",
    "cancelled": "cancelled",
}
POSTGRES_CONNECTIONS = 10

_KEY = "SELECT id FROM api_keys WHERE key_hash = {p} AND revoked_at IS NULL"
_JOB = (
    "SELECT id, state, progress_step, progress_total, base_url FROM jobs "
    "WHERE id = {p} AND key_id = {p}"
)

Read = Callable[[str, tuple[Any, ...]], tuple[Any, ...] | None]


def sqlite_reader(path: str) -> tuple[Read, bool]:
    """One autocommit connection, read on the event loop (as Retouch does on SQLite)."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def read(sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = connection.execute(sql.format(p="?"), params).fetchone()
        return row

    return read, True


def postgres_reader(url: str) -> tuple[Read, bool]:
    """A small pool of autocommit psycopg connections, read from the thread pool."""
    import psycopg

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    pool: queue.Queue[psycopg.Connection[tuple[Any, ...]]] = queue.Queue()
    for _ in range(POSTGRES_CONNECTIONS):
        pool.put(psycopg.connect(conninfo, autocommit=True))

    @contextmanager
    def connection() -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        taken = pool.get()
        try:
            yield taken
        finally:
            pool.put(taken)

    def read(sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        with connection() as conn:
            return conn.execute(sql.format(p="%s").encode(), params, prepare=True).fetchone()

    return read, False


def create_app(database_url: str) -> FastAPI:
    if database_url.startswith("sqlite:///"):
        read, on_loop = sqlite_reader(database_url.removeprefix("sqlite:///"))
    else:
        read, on_loop = postgres_reader(database_url)

    async def query(sql: str, *params: Any) -> tuple[Any, ...] | None:
        return read(sql, params) if on_loop else await run_in_threadpool(read, sql, params)

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/v1/requests/{request_id}/status")
    async def get_status(request_id: str, request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return Response(status_code=401)
        found = await query(_KEY, hashlib.sha256(token.strip().encode()).hexdigest())
        if found is None:
            return Response(status_code=401)
        job = await query(_JOB, request_id, found[0])
        if job is None:
            return Response(status_code=404)
        job_id, state, step, total, base = job
        root = f"{base or str(request.base_url).rstrip('/')}/v1/requests/{job_id}"
        body: dict[str, Any] = {"request_id": job_id, "status": STATUS_NAMES[state]}
        if state == "running" and total:
            step = step or 0
            body["progress"] = {"step": step, "total": total, "fraction": round(step / total, 4)}
        body["status_url"] = f"{root}/status"
        body["result_url"] = f"{root}/result"
        finished = state in ("succeeded", "failed", "cancelled")
        return Response(
            json.dumps(body, separators=(",", ":")),
            media_type="application/json",
            headers=None if finished else {"Retry-After": "1"},
        )

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument(
        "--database-url",
        required=True,
        help="sqlite:///PATH or postgresql+psycopg://… of a Retouch database",
    )
    args = parser.parse_args()
    # The settings `retouch serve` runs uvicorn with.
    uvicorn.run(
        create_app(args.database_url),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
