"""Probes for load balancers and orchestrators, answered without a key.

`/healthz` says the process answers and touches nothing else: a liveness probe that read the
database would get every API process restarted during a database outage, which restarting
cannot fix. `/readyz` says this process can serve: the job database answers, at the schema
revision this code expects, and the file storage is reachable. Each check runs on a thread
of its own and is given up on after CHECK_SECONDS, so a probe is answered in seconds even
while the database hangs."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import Engine

from retouch.api.dependencies import app_state, send
from retouch.api.errors import error_response, error_responses
from retouch.contract.bodies import Health, Readiness, ReadinessCheck
from retouch.contract.errors import OVERLOADED, ErrorBody
from retouch.jobs.database import newest_revision, schema_revision
from retouch.jobs.outage import describe
from retouch.storage.base import Storage

router = APIRouter(tags=["operations"])

# Under the usual probe timeouts (Kubernetes' and cloud load balancers' default to 5 s) and
# far above a healthy check (a millisecond or so).
CHECK_SECONDS: Final = 2.0


class BoundedCheck:
    """One dependency's check, on its own single thread: while a check hangs (a connection
    attempt to a silent host), later probes queue behind it and time out, instead of starting
    a thread each."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"readyz-{name}")

    async def run(self, check: Callable[[], str]) -> ReadinessCheck:
        loop = asyncio.get_running_loop()
        try:
            # Timing out cancels a check still queued; one already running is left to end.
            detail = await asyncio.wait_for(
                loop.run_in_executor(self._executor, check), CHECK_SECONDS
            )
        except TimeoutError:
            return ReadinessCheck(ok=False, detail=f"no answer within {CHECK_SECONDS:g} s")
        except Exception as error:
            return ReadinessCheck(ok=False, detail=describe(error))
        return ReadinessCheck(ok=True, detail=detail)


_DATABASE: Final = BoundedCheck("database")
_STORAGE: Final = BoundedCheck("storage")
# Read once: alembic parses every migration script to find it.
_newest_revision: Final = functools.cache(newest_revision)


class NotReady(Exception):
    """A dependency answers, but not as this process needs."""


def check_database(engine: Engine) -> str:
    current = schema_revision(engine)
    newest = _newest_revision()
    if current != newest:
        # A newer process migrated it (this one is out of date), or none has yet.
        raise NotReady(f"the schema is at revision {current}, this version needs {newest}")
    return f"answers, schema at revision {current}"


def check_storage(storage: Storage) -> str:
    storage.probe()
    return "reachable"


@router.get(
    "/healthz",
    response_model=Health,
    responses={500: error_responses()[500]},
)
async def get_health() -> Response:
    """The process answers (a liveness probe): nothing else is checked."""
    return send(Health(status="ok"))


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={
        **error_responses(),
        503: {
            "model": ErrorBody,
            "description": "Not ready (503001): the job database does not answer or its "
            "schema is not this version's, or the storage is unreachable; the message names "
            "the failed checks",
        },
    },
)
async def get_readiness(request: Request) -> Response:
    """Whether this process can serve (a readiness probe): the job database answers at the
    schema revision this version expects, and the file storage is reachable."""
    state = app_state(request)
    # The key store reads the job database: its engine is the store's.
    database, storage = await asyncio.gather(
        _DATABASE.run(functools.partial(check_database, state.keys.engine)),
        _STORAGE.run(functools.partial(check_storage, state.storage)),
    )
    checks = {"database": database, "storage": storage}
    failed = [f"{name}: {check.detail}" for name, check in checks.items() if not check.ok]
    if failed:
        return error_response(503, OVERLOADED, "not ready: " + "; ".join(failed))
    return send(Readiness(status="ready", database=database, storage=storage))
